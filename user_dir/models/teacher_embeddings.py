"""Students that start from the teacher's input embeddings.

A BiLSTM over the teacher's own WordPiece tokens copies the rows of its
symbols (``init_by_symbol``).  A DAN over n-grams starts each n-gram at the
mean of the teacher's embeddings of its WordPiece tokens (``init_ngrams``),
the way fastText starts from pretrained word vectors: the student then knows
from the start that "superb" is near "excellent", which a transfer set of a
few thousand sentences cannot teach it.
"""

import logging
import os
from typing import List, NamedTuple, Optional

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)


class TeacherEmbeddings(NamedTuple):
    symbols: List[str]          # the teacher's fairseq dictionary
    weight: torch.Tensor        # [len(symbols), D]
    tokenizer: Optional[str]    # its tokenizer.json / vocab.txt, if found


def load_teacher_embeddings(path: str) -> TeacherEmbeddings:
    """The input embeddings of a fairseq checkpoint, its dictionary and its WordPiece vocabulary.

    The dictionary is ``dict.txt`` beside the checkpoint (a distill-import-hf
    directory) or the ``input0/dict.txt`` of its saved data path (a
    fine-tuned teacher); the tokenizer is ``tokenizer.json`` beside it or the
    checkpoint's ``--wordpiece-vocab``.
    """
    from fairseq import checkpoint_utils
    from fairseq.data import Dictionary

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--embed-init checkpoint not found: {path}")
    state = checkpoint_utils.load_checkpoint_to_cpu(path)
    keys = [k for k in state["model"] if k.endswith("embed_tokens.weight")]
    if len(keys) != 1:
        raise ValueError(f"{path}: expected one input-embedding matrix, found {keys or 'none'}")
    weight = state["model"][keys[0]].float()
    here = os.path.dirname(os.path.abspath(path))
    cfg = state.get("cfg") or {}
    dicts = [os.path.join(here, "dict.txt")]
    if cfg.get("task") is not None and cfg["task"].get("data"):
        dicts.append(os.path.join(cfg["task"]["data"], "input0", "dict.txt"))
    tokenizers = [os.path.join(here, n) for n in ("tokenizer.json", "vocab.txt")]
    if cfg.get("bpe") is not None and cfg["bpe"].get("wordpiece_vocab"):
        tokenizers.append(cfg["bpe"]["wordpiece_vocab"])
    tokenizer = next((t for t in tokenizers if os.path.isfile(t)), None)
    for dict_path in dicts:
        if os.path.exists(dict_path):
            symbols = Dictionary.load(dict_path).symbols
            if len(symbols) != weight.size(0):
                raise ValueError(f"{dict_path} has {len(symbols)} entries but {path} embeds "
                                 f"{weight.size(0)} tokens: they do not belong together")
            return TeacherEmbeddings(symbols, weight, tokenizer)
    raise FileNotFoundError(f"no dictionary for {path}: looked for {', '.join(dicts)}")


def _check_dim(teacher: TeacherEmbeddings, embed: nn.Embedding, path: str) -> None:
    if teacher.weight.size(1) != embed.embedding_dim:
        raise ValueError(f"{path} has {teacher.weight.size(1)}-d embeddings: set --encoder-embed-dim "
                         f"{teacher.weight.size(1)} to start from them")


def init_by_symbol(embed: nn.Embedding, dictionary, path: str) -> None:
    """Copy the teacher's rows of the symbols both dictionaries share; the rest stay random."""
    teacher = load_teacher_embeddings(path)
    _check_dim(teacher, embed, path)
    row = {s: i for i, s in enumerate(teacher.symbols)}
    ours = [(i, row[s]) for i, s in enumerate(dictionary.symbols) if s in row]
    with torch.no_grad():
        embed.weight[torch.tensor([i for i, _ in ours])] = teacher.weight[torch.tensor([j for _, j in ours])]
        embed.weight[dictionary.pad()].zero_()
    logger.info("embeddings: %d of %d rows from %s", len(ours), len(dictionary), path)


def init_ngrams(embed: nn.Embedding, dictionary, path: str, joiner: str, chunk: int = 65536) -> None:
    """Start every n-gram at the mean teacher embedding of its WordPiece tokens."""
    from ..encoders.wordpiece import BERT_TO_FAIRSEQ, load_wordpiece

    teacher = load_teacher_embeddings(path)
    _check_dim(teacher, embed, path)
    if teacher.tokenizer is None:
        raise FileNotFoundError(f"no WordPiece vocabulary for {path}: put its tokenizer.json beside it")
    tok = load_wordpiece(teacher.tokenizer)
    row = {s: i for i, s in enumerate(teacher.symbols)}
    start = dictionary.nspecial
    grams = [s.replace(joiner, " ") for s in dictionary.symbols[start:]]
    done = 0
    with torch.no_grad():
        for a in range(0, len(grams), chunk):
            encodings = tok.encode_batch(grams[a:a + chunk], add_special_tokens=False)
            feats, rows = [], []
            for k, e in enumerate(encodings):
                ids = [row[s] for s in (BERT_TO_FAIRSEQ.get(t, t) for t in e.tokens) if s in row]
                feats += [k] * len(ids)
                rows += ids
            feats, rows = torch.tensor(feats, dtype=torch.long), torch.tensor(rows, dtype=torch.long)
            n = len(encodings)
            total = torch.zeros(n, embed.embedding_dim).index_add_(0, feats, teacher.weight[rows])
            count = torch.bincount(feats, minlength=n)
            has = count > 0
            target = torch.arange(start + a, start + a + n)[has]
            embed.weight[target] = total[has] / count[has].unsqueeze(1).float()
            done += int(has.sum())
    logger.info("n-gram embeddings: %d of %d from the WordPiece embeddings of %s",
                done, len(grams), path)
