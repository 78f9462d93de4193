"""Whole files through a BPE, for fairseq-preprocess (which applies none itself)."""

import logging
import os
from typing import Sequence

from ..data.text_io import DecodeReport, atomic_output, iter_lines, warn_bad_utf8

logger = logging.getLogger(__name__)


def build_bpe(kind: str, wordpiece_vocab: str = None, sentencepiece_model: str = None):
    """fairseq's ``--bpe wordpiece`` or ``--bpe sentencepiece``, configured as fairseq-train would."""
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

    from .wordpiece import WordPieceBPE, WordPieceConfig

    if kind == "wordpiece":
        if not wordpiece_vocab:
            raise ValueError("--bpe wordpiece needs --wordpiece-vocab (tokenizer.json or vocab.txt)")
        return WordPieceBPE(WordPieceConfig(wordpiece_vocab=wordpiece_vocab))
    if kind == "sentencepiece":
        if not sentencepiece_model:
            raise ValueError("--bpe sentencepiece needs --sentencepiece-model")
        if not os.path.isfile(sentencepiece_model):
            raise FileNotFoundError(f"SentencePiece model not found: {sentencepiece_model} "
                                    f"(train one with --sentencepiece-vocab-size N)")
        return SentencepieceBPE(SentencepieceConfig(sentencepiece_model=sentencepiece_model))
    raise ValueError(f"unknown --bpe {kind!r}: wordpiece or sentencepiece")


def train_sentencepiece(inputs: Sequence[str], model_path: str, vocab_size: int,
                        model_type: str = "unigram", max_sentences: int = 2_000_000) -> str:
    """Train a SentencePiece model on text files; written atomically to ``model_path``."""
    import sentencepiece as spm

    if not model_path.endswith(".model"):
        raise ValueError(f"--sentencepiece-model must end in .model: {model_path}")
    for p in inputs:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"input file not found: {p}")
    prefix = os.path.join(os.path.dirname(os.path.abspath(model_path)),
                          f".{os.path.basename(model_path)[:-6]}.{os.getpid()}")
    try:
        # fairseq's dictionary adds its own specials: no <s>, </s>, <pad> pieces here
        spm.SentencePieceTrainer.train(
            input=",".join(inputs), model_prefix=prefix, vocab_size=vocab_size,
            model_type=model_type, character_coverage=1.0, bos_id=-1, eos_id=-1,
            input_sentence_size=max_sentences, shuffle_input_sentence=True, minloglevel=2,
        )
        os.replace(prefix + ".model", model_path)
        os.replace(prefix + ".vocab", model_path[:-6] + ".vocab")
    finally:
        for ext in (".model", ".vocab"):
            if os.path.exists(prefix + ext):
                os.unlink(prefix + ext)
    logger.info("trained a %d-piece %s SentencePiece model: %s", vocab_size, model_type, model_path)
    return model_path


def encode_file(bpe, input_path: str, output_path: str, batch_lines: int = 10000) -> int:
    """BPE-encode a text file line by line (line rules of ``text_io``); atomic output."""
    encode_batch = getattr(bpe, "encode_batch", None) or (lambda lines: [bpe.encode(x) for x in lines])
    report, batch, written = DecodeReport(), [], 0
    with atomic_output(output_path, "w", encoding="utf-8", newline="\n") as out:
        for line in iter_lines(input_path, report=report):
            batch.append(line)
            if len(batch) >= batch_lines:
                out.write("".join(x + "\n" for x in encode_batch(batch)))
                written, batch = written + len(batch), []
        out.write("".join(x + "\n" for x in encode_batch(batch)))
        written += len(batch)
    warn_bad_utf8(input_path, [n + 1 for n in report.bad_lines])
    return written
