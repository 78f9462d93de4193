"""Whole files through a BPE, for fairseq-preprocess (which applies none itself)."""

import logging
import os
import uuid
from typing import Optional, Sequence

from ..fileio import atomic_output, check_input_file, check_output_path, publish
from .truncation import check_window, head_tail
from .text_io import DecodeReport, iter_lines, remove_stale_temps, warn_bad_utf8

logger = logging.getLogger(__name__)


def build_bpe(kind: str, wordpiece_vocab: str = None, sentencepiece_model: str = None):
    """fairseq's ``--bpe wordpiece`` or ``--bpe sentencepiece``, configured as fairseq-train would."""
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

    from ..encoders.wordpiece import WordPieceBPE, WordPieceConfig

    if kind == "wordpiece":
        if not wordpiece_vocab:
            raise ValueError("--bpe wordpiece needs --wordpiece-vocab (tokenizer.json or vocab.txt)")
        return WordPieceBPE(WordPieceConfig(wordpiece_vocab=wordpiece_vocab))
    if kind == "sentencepiece":
        if not sentencepiece_model:
            raise ValueError("--bpe sentencepiece needs --sentencepiece-model")
        try:
            check_input_file(sentencepiece_model, "SentencePiece model")
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e} (train one with --sentencepiece-vocab-size N)") from None
        return SentencepieceBPE(SentencepieceConfig(sentencepiece_model=sentencepiece_model))
    raise ValueError(f"unknown --bpe {kind!r}: wordpiece or sentencepiece")


def train_sentencepiece(inputs: Sequence[str], model_path: str, vocab_size: int,
                        model_type: str = "unigram", max_sentences: int = 2_000_000) -> str:
    """Train a SentencePiece model on text files; written atomically to ``model_path``."""
    import sentencepiece as spm

    if not model_path.endswith(".model"):
        raise ValueError(f"--sentencepiece-model must end in .model: {model_path}")
    for p in inputs:
        check_input_file(p)
    vocab_path = model_path[:-6] + ".vocab"
    for p in (model_path, vocab_path):
        check_output_path(p)
    directory = os.path.dirname(os.path.abspath(model_path))
    os.makedirs(directory, exist_ok=True)
    # fileio's temporary name, so that a rerun removes what a killed run left
    remove_stale_temps(directory, [os.path.basename(model_path)])
    prefix = os.path.join(directory, f".{os.path.basename(model_path)}.{os.getpid()}."
                                     f"{uuid.uuid4().hex[:8]}.tmp")
    try:
        # fairseq's dictionary adds its own specials: no <s>, </s>, <pad> pieces here
        spm.SentencePieceTrainer.train(
            input=",".join(inputs), model_prefix=prefix, vocab_size=vocab_size,
            model_type=model_type, character_coverage=1.0, bos_id=-1, eos_id=-1,
            input_sentence_size=max_sentences, shuffle_input_sentence=True, minloglevel=2,
        )
        publish(prefix + ".vocab", vocab_path)
        publish(prefix + ".model", model_path)  # last: a rerun trusts an existing model
    finally:
        for ext in (".model", ".vocab"):
            if os.path.exists(prefix + ext):
                os.unlink(prefix + ext)
    logger.info("trained a %d-piece %s SentencePiece model: %s", vocab_size, model_type, model_path)
    return model_path


def encode_file(bpe, input_path: str, output_path: str, batch_lines: int = 10000,
                max_tokens: Optional[int] = None, keep_head: Optional[int] = None) -> int:
    """BPE-encode a text file line by line (line rules of ``text_io``); atomic output.

    ``max_tokens``: a line of more tokens keeps its first ``keep_head`` and its
    last ``max_tokens - keep_head`` (``truncation.head_tail``; no ``keep_head``:
    the first ``max_tokens``).  Returns the lines written."""
    check_window(max_tokens, keep_head)
    check_input_file(input_path)
    check_output_path(output_path)
    remove_stale_temps(os.path.dirname(os.path.abspath(output_path)), [os.path.basename(output_path)])
    encode_batch = getattr(bpe, "encode_batch", None) or (lambda lines: [bpe.encode(x) for x in lines])
    report, batch, written, cut = DecodeReport(), [], 0, 0

    def encoded(lines):
        nonlocal cut
        out = encode_batch(lines)
        if max_tokens is not None:
            pieces = [x.split() for x in out]
            cut += sum(len(p) > max_tokens for p in pieces)
            out = [" ".join(head_tail(p, max_tokens, keep_head)) for p in pieces]
        return "".join(x + "\n" for x in out)

    with atomic_output(output_path, "w", encoding="utf-8", newline="\n") as out:
        for line in iter_lines(input_path, report=report):
            batch.append(line)
            if len(batch) >= batch_lines:
                out.write(encoded(batch))
                written, batch = written + len(batch), []
        out.write(encoded(batch))
        written += len(batch)
    warn_bad_utf8(input_path, [n + 1 for n in report.bad_lines])
    if max_tokens is not None:
        how = "the head" if keep_head is None else f"head {keep_head} + tail {max_tokens - keep_head}"
        logger.info("%s: %d of %d lines cut to %d tokens (%s)", input_path, cut, written, max_tokens, how)
    return written
