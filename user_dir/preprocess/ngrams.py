"""N-gram features for the sparse-distillation DAN.

Tokenizers (``--tokenizer``), applied after U+2581 and control characters
(Unicode category Cc: NUL, ESC, DEL, C1 codes...) are turned into spaces, as
other whitespace is, so that they are never features nor parts of one:

* ``default``: lower-cased words with inner apostrophes kept (``don't``,
  ``n't``, ``'s``) and every other non-space symbol as its own token, so
  ``!`` and ``?`` are features;
* ``sklearn``: exactly scikit-learn's ``CountVectorizer`` defaults, lower-case
  and ``(?u)\\b\\w\\w+\\b`` (the paper's tool: one-letter words and punctuation
  are dropped);
* ``whitespace``: split on whitespace, case kept (pre-tokenized corpora).

An n-gram is its tokens joined by U+2581 (``▁``), which no token contains, so a
feature is one whitespace-free string.  The vocabulary file is one
``ngram count`` per line, most frequent first: it is a valid fairseq
``dict.txt`` and goes to ``fairseq-preprocess --srcdict`` unchanged.  Its
settings (tokenizer, n-gram range) live in ``VOCAB.json`` beside it.

Features of a text are listed in text order: by the position where the
n-gram ends, shorter n-grams first.  A prefix of the features is therefore
exactly the features of a prefix of the text, which is what truncation to
``--max-positions`` keeps.
"""

import json
import logging
import os
import re
import unicodedata
from functools import lru_cache
from itertools import chain
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import ngram_kernels
from .ngram_table import (
    NONE,
    NgramTable,
    NgramTrie,
    TokenIndex,
    n_words,
    pack_ids,
    remap_rows,
    token_ids_of,
    unpack,
)
from ..fileio import (
    atomic_output,
    check_input_file,
    check_output_path,
    prepare_work_dir,
    remove_work_dir,
)
from .text_io import (
    DecodeReport,
    clean_text,
    count_lines,
    find_offsets,
    iter_line_batches,
    map_chunks,
    output_job,
    progress_callback,
    warn_bad_utf8,
)

logger = logging.getLogger(__name__)

JOINER = "\u2581"
VOCAB_FORMAT = "distill-ngram-vocab/1"
# fairseq's own symbols: a feature with one of these names would clash in dict.txt
FAIRSEQ_SPECIALS = frozenset(["<s>", "<pad>", "</s>", "<unk>"])

# control characters that are not whitespace already (Cc is closed: all below U+00A0)
_CONTROL = re.compile("[%s]" % re.escape("".join(
    chr(c) for c in range(0xA0) if unicodedata.category(chr(c)) == "Cc" and not chr(c).isspace())))

# name -> (token pattern, lower-case first)
_TOKEN_PATTERNS = {
    "default": (r"\w+(?:'\w+)*|'\w+|[^\w\s\ufffd]", True),
    "sklearn": (r"(?u)\b\w\w+\b", True),
    "whitespace": (r"\S+", False),
}


class _Tokenizer:
    """One tokenizer: a regex over a prepared (joiner-free, maybe lower-cased) text."""

    def __init__(self, pattern: str, lower: bool):
        self.regex = re.compile(pattern)
        self.lower = lower

    def _prepare(self, text: str) -> str:
        text = clean_text(text).replace(JOINER, " ")
        if not text.isprintable():  # cheap test; most lines have no control character
            text = _CONTROL.sub(" ", text)
        return text.lower() if self.lower else text

    def __call__(self, text: str) -> List[str]:
        return self.regex.findall(self._prepare(text))

    def split(self, text: str) -> List[str]:
        """Whitespace-separated chunks of the prepared text.  No token spans
        whitespace, so a text's tokens are its chunks' tokens in order."""
        return self._prepare(text).split()


TOKENIZERS: Dict[str, _Tokenizer] = {name: _Tokenizer(*spec) for name, spec in _TOKEN_PATTERNS.items()}


def get_tokenizer(name: str) -> _Tokenizer:
    try:
        return TOKENIZERS[name]
    except KeyError:
        raise ValueError(f"unknown tokenizer {name!r}; choose from {sorted(TOKENIZERS)}") from None


def _check_range(ngram_range: Sequence[int]) -> Tuple[int, int]:
    lo, hi = int(ngram_range[0]), int(ngram_range[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"bad n-gram range {lo} {hi}: need 1 <= MIN <= MAX")
    return lo, hi


# ------------------------------------------------------------------ vocabulary


class NgramVocab:
    """A top-K n-gram vocabulary with the settings that produced it."""

    def __init__(self, entries: List[Tuple[str, int]], tokenizer: str = "default",
                 ngram_range: Sequence[int] = (1, 4), meta: Optional[dict] = None):
        get_tokenizer(tokenizer)
        self.entries = entries
        self.tokenizer = tokenizer
        self.ngram_range = _check_range(ngram_range)
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.entries)

    def settings(self) -> dict:
        return {
            "format": VOCAB_FORMAT,
            "tokenizer": self.tokenizer,
            "ngram_range": list(self.ngram_range),
            "joiner": JOINER,
            "num_features": len(self.entries),
            **self.meta,
        }

    def save(self, path: str) -> None:
        with atomic_output(path, "w", encoding="utf-8", newline="\n") as f:
            for gram, count in self.entries:
                f.write(f"{gram} {count}\n")
        with atomic_output(path + ".json", "w", encoding="utf-8") as f:
            json.dump(self.settings(), f, indent=2, ensure_ascii=False)
            f.write("\n")

    @classmethod
    def load(cls, path: str) -> "NgramVocab":
        settings = load_settings(path + ".json")
        entries = []
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    gram, count = raw.decode("utf-8").rstrip("\n").rsplit(" ", 1)
                    entries.append((gram, int(count)))
                except (UnicodeDecodeError, ValueError):
                    raise ValueError(
                        f"{path}: line {lineno} is not 'ngram count' in UTF-8: {raw[:80]!r}"
                    ) from None
        if not entries:
            raise ValueError(f"vocabulary {path} is empty: it has no n-gram to extract; "
                             f"rebuild it with distill-ngram-dict")
        if len(entries) != settings.get("num_features", len(entries)):
            raise ValueError(
                f"{path} has {len(entries)} features but {path}.json says "
                f"{settings['num_features']}: the two files do not belong together"
            )
        meta = {k: v for k, v in settings.items()
                if k not in ("format", "tokenizer", "ngram_range", "joiner", "num_features")}
        return cls(entries, settings["tokenizer"], settings["ngram_range"], meta)


def load_settings(json_path: str) -> dict:
    """Read and check a vocabulary's settings file (``VOCAB.json``)."""
    if not os.path.exists(json_path):
        raise FileNotFoundError(
            f"{json_path} not found: the n-gram settings are written beside the "
            f"vocabulary by distill-ngram-dict"
        )
    with open(json_path, encoding="utf-8") as f:
        settings = json.load(f)
    if settings.get("format") != VOCAB_FORMAT:
        raise ValueError(f"{json_path}: not an n-gram vocabulary settings file ({VOCAB_FORMAT})")
    get_tokenizer(settings["tokenizer"])
    _check_range(settings["ngram_range"])
    return settings


class _ChunkCodes(dict):
    """Whitespace chunk -> a code for its tokens, memoized (chunks repeat by Zipf's law).

    A chunk of one token maps to that token's id; any other chunk (punctuation
    attached, or no token at all) to ``-1 - k``, where ``multi[k]`` holds its
    ids.  ``trim`` (between batches, as codes point into ``multi``) clears it
    past ``max_size`` chunks, so that a stream of new words cannot grow it
    without bound.
    """

    def __init__(self, tokenize: "_Tokenizer", lookup, max_size: int = 1 << 20):
        super().__init__()
        self.findall = tokenize.regex.findall
        self.lookup = lookup
        self.max_size = max_size
        self.multi: List[Tuple[int, ...]] = []

    def trim(self) -> None:
        if len(self) >= self.max_size:
            self.clear()
            self.multi.clear()

    def __missing__(self, chunk: str) -> int:
        ids = tuple(map(self.lookup.__getitem__, self.findall(chunk)))
        if len(ids) == 1:
            code = ids[0]
        else:
            code = -1 - len(self.multi)
            self.multi.append(ids)
        self[chunk] = code
        return code

    def expand(self, codes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Token ids of a sequence of chunk codes, and the number per chunk."""
        multi = codes < 0
        if not multi.any():
            return codes.astype(np.uint64), np.ones(len(codes), dtype=np.int64)
        kinds, which = np.unique(codes[multi], return_inverse=True)
        ids = [self.multi[-1 - int(c)] for c in kinds]
        kind_len = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        kind_start = np.cumsum(kind_len) - kind_len
        pool = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(kind_len.sum()))
        per_chunk = np.ones(len(codes), dtype=np.int64)
        per_chunk[multi] = kind_len[which]
        start = np.cumsum(per_chunk) - per_chunk
        flat = np.empty(int(per_chunk.sum()), dtype=np.int64)
        flat[start[~multi]] = codes[~multi]
        # each multi-token chunk copies its ids from the pool
        n = per_chunk[multi]
        offset = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        flat[np.repeat(start[multi], n) + offset] = pool[np.repeat(kind_start[which], n) + offset]
        return flat.astype(np.uint64), per_chunk


class ChunkEncoder:
    """Lines -> their token ids back to back and the line of each, through
    the memo of whitespace chunks; ``lookup`` maps a token to its id
    (``TokenIndex`` while counting, ``TokenLookup`` for a fixed vocabulary)."""

    def __init__(self, tokenize: _Tokenizer, lookup):
        self.split = tokenize.split
        self.codes = _ChunkCodes(tokenize, lookup)

    def __call__(self, lines: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        self.codes.trim()
        chunks = list(map(self.split, lines))
        per_line = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks))
        codes = np.fromiter(map(self.codes.__getitem__, chain.from_iterable(chunks)),
                            dtype=np.int64, count=int(per_line.sum()))
        flat, per_chunk = self.codes.expand(codes)
        line_of = np.repeat(np.repeat(np.arange(len(lines)), per_line), per_chunk)
        return flat, line_of


class BatchFeaturizer:
    """Lines -> their in-vocabulary n-grams in text order, a batch at a time.

    Shared by extraction (which writes the n-gram strings) and inference
    (which needs dictionary ids), so both see exactly the same features.
    Tokenizing, token lookup and the trie walk run compiled over the whole
    batch (``ngram_kernels``): in Python they were most of the DAN's
    prediction time.  With ``threads`` > 1 a batch is cut into that many runs
    of lines featurized at once (the kernels release the GIL); extraction's
    worker processes keep 1.
    """

    _MIN_LINES_PER_THREAD = 64

    def __init__(self, entries: Sequence[str], tokenizer: str, ngram_range: Sequence[int], threads: int = 1):
        self.tokenize = get_tokenizer(tokenizer)
        self.mode = ngram_kernels.MODES[tokenizer]
        self.lo, self.hi = _check_range(ngram_range)
        lookup, ids = token_ids_of(entries, JOINER)
        self.trie = NgramTrie(ids, len(lookup))
        self.tokens = ngram_kernels.TokenTable(lookup)
        self.classes = ngram_kernels.char_classes(JOINER)
        self.threads = max(1, int(threads))
        self._pool = None

    def _run(self, cps: np.ndarray, begin: np.ndarray, end: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return ngram_kernels.featurize_codepoints(cps, begin, end, self.mode, self.classes, self.tokens,
                                                  self.trie, self.lo, self.hi)

    def __call__(self, lines: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """Entry ids of all features, line after line, and the number per line."""
        # the Python part (joining, code points) once per batch; threads share its code points
        _, _, cps, begin, end = ngram_kernels.prepare_lines(lines, self.tokenize.lower)
        parts = min(self.threads, len(lines) // self._MIN_LINES_PER_THREAD)
        if parts <= 1:
            return self._run(cps, begin, end)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="featurizer")
        cuts = np.linspace(0, len(lines), parts + 1).astype(int).tolist()
        done = list(self._pool.map(lambda ab: self._run(cps, begin[ab[0]:ab[1]], end[ab[0]:ab[1]]),
                                   zip(cuts[:-1], cuts[1:])))
        return np.concatenate([d[0] for d in done]), np.concatenate([d[1] for d in done])

    def __getstate__(self):  # a pool does not pickle (spawned workers, DataLoader copies)
        return {**self.__dict__, "_pool": None}


class Featurizer:
    """Raw text -> ids of its features in a fairseq dictionary (inference side).

    ``Featurizer(...).batch(texts)`` equals what ``distill-extract-ngrams``
    followed by ``fairseq-preprocess --srcdict`` gives for those lines,
    truncated to ``max_positions`` as the task does.
    """

    def __init__(self, settings: dict, symbols: Sequence[str], nspecial: int = 4,
                 max_positions: Optional[int] = None, threads: int = 1):
        self.nspecial = nspecial
        self.batch_featurizer = BatchFeaturizer(symbols[nspecial:], settings["tokenizer"],
                                                settings["ngram_range"], threads)
        self.max_positions = max_positions

    def flat(self, texts: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """Dictionary ids of all texts' features, line after line, and each line's count."""
        if not texts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        feats, per_line = self.batch_featurizer(texts)
        ids = feats + self.nspecial
        if self.max_positions and len(ids) and per_line.max() > self.max_positions:
            first = np.repeat(np.cumsum(per_line) - per_line, per_line)
            keep = np.arange(len(ids)) - first < self.max_positions
            ids, per_line = ids[keep], np.minimum(per_line, self.max_positions)
        return ids, per_line

    def batch(self, texts: Sequence[str]) -> List[np.ndarray]:
        ids, per_line = self.flat(texts)
        return np.split(ids, np.cumsum(per_line)[:-1]) if len(texts) else []

    def __call__(self, text: str) -> List[int]:
        return self.batch([text])[0].tolist()


# -------------------------------------------------------------------- counting

_BATCH_BYTES = 1 << 20  # about 20,000 SST-2 lines or 800 reviews: a batch's token arrays stay small


def _count_chunk(path: str, start: int, end: int, tokenizer: str, lo: int, hi: int,
                 max_in_memory: int):
    """Count n-grams of one byte range; prune rare ones to stay in memory.

    Returns the chunk's tokens (id order), its packed n-gram rows and counts,
    the pruning threshold, the number of lines and the invalid-UTF-8 lines.
    """
    index = TokenIndex()
    mode, lower = ngram_kernels.MODES[tokenizer], TOKENIZERS[tokenizer].lower
    classes = ngram_kernels.char_classes(JOINER)
    encode = None  # the regex path, for a batch where two tokens' hashes collide
    table = ngram_kernels.NgramCounter(n_words(hi))
    report = DecodeReport()
    pruned_below = 0
    for batch in iter_line_batches(path, start, end, report, progress_callback(), _BATCH_BYTES):
        found = ngram_kernels.growing_token_ids(batch, mode, lower, classes, index)
        if found is None:
            encode = encode or ChunkEncoder(TOKENIZERS[tokenizer], index)
            flat, line_of = encode(batch)
            found = flat.astype(np.int64), line_of
        table.add(*found, lo, hi)
        if len(table) > max_in_memory:
            # word2vec-style reduction: drop the rarest counts until half the
            # budget is free, so that pruning stays infrequent
            while len(table) > max_in_memory // 2:
                pruned_below += 1
                table.prune(pruned_below + 1)
    rows, counts = table.rows_and_counts()
    return list(index), rows, counts, pruned_below, report.num_lines, report.bad_lines


def _select_top(rows: np.ndarray, counts: np.ndarray, tokens: List[str], k: int) -> List[Tuple[str, int]]:
    """The ``k`` most frequent n-grams, ties broken alphabetically (deterministic)."""
    if len(counts) > k:
        threshold = np.partition(counts, len(counts) - k)[len(counts) - k]
        keep = counts >= threshold
        rows, counts = rows[keep], counts[keep]
    none = int(NONE)
    items = [(JOINER.join(tokens[i] for i in ids if i != none), c)
             for ids, c in zip(unpack(rows).tolist(), counts.tolist())]
    items.sort(key=lambda gc: (-gc[1], gc[0]))
    return items[:k]


def _chunk_tasks(paths: Sequence[str], workers: int) -> Tuple[List[Tuple[str, int, int]], int]:
    sizes = [os.path.getsize(p) for p in paths]
    total = sum(sizes) or 1
    tasks = []
    for path, size in zip(paths, sizes):
        # each worker counts one contiguous range per file, so results merge once
        n = max(1, round(workers * size / total)) if workers > 1 else 1
        offsets = find_offsets(path, n)
        tasks += [(path, a, b) for a, b in zip(offsets[:-1], offsets[1:])]
    return tasks, sum(sizes)


def build_vocab(paths: Sequence[str], max_features: int, ngram_range: Sequence[int] = (1, 4),
                tokenizer: str = "default", workers: int = 1,
                max_in_memory: int = 5_000_000) -> NgramVocab:
    """Count the n-grams of text files and keep the ``max_features`` most frequent.

    Memory is bounded by ``max_in_memory`` distinct n-grams per worker (a
    packed row and a count, about 50 bytes each with sorting buffers): past
    that, the rarest counts are pruned (word2vec's vocabulary reduction),
    which only affects n-grams near the bottom of a large vocabulary.  The
    pruning threshold is recorded in the settings as ``pruned_below``.
    """
    lo, hi = _check_range(ngram_range)
    get_tokenizer(tokenizer)
    if max_features < 1:
        raise ValueError("--max-features must be at least 1")
    if max_in_memory < 1:
        raise ValueError("--max-ngrams-in-memory must be at least 1")
    for p in paths:
        check_input_file(p)
    tasks, total = _chunk_tasks(paths, workers)
    results = map_chunks(
        _count_chunk, [t + (tokenizer, lo, hi, max_in_memory) for t in tasks],
        workers, total, "counting n-grams",
    )
    # token ids differ between workers: map them to one index, then merge
    index = TokenIndex()
    words = n_words(hi)
    table = NgramTable(words)
    for tokens, rows, counts, *_ in results:
        mapping = np.fromiter(map(index.__getitem__, tokens), dtype=np.uint64, count=len(tokens))
        table.add(remap_rows(rows, mapping), counts)
    table.merge()
    rows, counts = table.rows, table.counts
    specials = [[index[t]] for t in FAIRSEQ_SPECIALS if t in index]
    if specials:
        clash = np.zeros(len(rows), dtype=bool)
        for special in pack_ids(specials, words):
            clash |= (rows == special).all(axis=1)
        rows, counts = rows[~clash], counts[~clash]
    pruned_below = max(r[3] for r in results)
    num_lines = sum(r[4] for r in results)
    _warn_bad_lines(tasks, [(r[4], r[5]) for r in results])
    distinct = len(rows)
    if not distinct:  # a 0-line dict.txt would only fail later, far from the cause
        names = ", ".join(paths)
        if pruned_below:
            raise ValueError(f"no n-gram of {names} survived pruning: --max-ngrams-in-memory "
                             f"{max_in_memory} is too small; raise it")
        raise ValueError(f"no n-grams in {names}: the input is empty or has no "
                         f"{tokenizer!r} tokens")
    entries = _select_top(rows, counts, list(index), max_features)
    if pruned_below:
        logger.warning(
            "more than %d distinct n-grams per worker: counts below %d were pruned while "
            "streaming; raise --max-ngrams-in-memory for exact counts", max_in_memory, pruned_below + 1
        )
    logger.info("%d lines, %d distinct n-grams kept in memory, vocabulary of %d",
                num_lines, distinct, len(entries))
    meta = {"max_features": max_features, "num_lines": num_lines,
            "pruned_below": pruned_below, "inputs": [os.path.basename(p) for p in paths]}
    return NgramVocab(entries, tokenizer, (lo, hi), meta)


def write_vocab(paths: Sequence[str], output_path: str, max_features: int,
                ngram_range: Sequence[int] = (1, 4), tokenizer: str = "default", workers: int = 1,
                max_in_memory: int = 5_000_000) -> NgramVocab:
    """:func:`build_vocab`, saved to ``output_path`` and its ``.json``, one run at a time."""
    for p in paths:
        check_input_file(p)
    for p in (output_path, output_path + ".json"):
        check_output_path(p)
    # OUTPUT.parts only holds the lock: the two files of a vocabulary never come
    # from two different runs
    parts_dir = output_path + ".parts"
    with output_job([output_path, output_path + ".json"], parts_dir):
        try:
            vocab = build_vocab(paths, max_features, ngram_range, tokenizer, workers, max_in_memory)
            vocab.save(output_path)
        finally:
            remove_work_dir(parts_dir)
    return vocab


def _warn_bad_lines(tasks, line_reports) -> None:
    """Log invalid-UTF-8 lines with file-level line numbers."""
    line_base: Dict[str, int] = {}
    bad: Dict[str, List[int]] = {}
    for (path, *_), (num_lines, bad_lines) in zip(tasks, line_reports):
        base = line_base.get(path, 0)
        bad.setdefault(path, []).extend(base + i + 1 for i in bad_lines)
        line_base[path] = base + num_lines
    for path, lines in bad.items():
        warn_bad_utf8(path, lines)


# ------------------------------------------------------------------ extraction


@lru_cache(maxsize=2)
def _vocab_featurizer(path: str, mtime: float):
    """The vocabulary's featurizer and its feature-line writer, built once per process."""
    vocab = NgramVocab.load(path)
    strings = [g for g, _ in vocab.entries]
    return BatchFeaturizer(strings, vocab.tokenizer, vocab.ngram_range), ngram_kernels.FeatureWriter(strings)


def _extract_chunk(vocab_path: str, mtime: float, path: str, start: int, end: int,
                   part_path: str) -> None:
    featurize, write = _vocab_featurizer(vocab_path, mtime)
    report = DecodeReport()
    with atomic_output(part_path, "wb") as out:
        for batch in iter_line_batches(path, start, end, report, progress_callback(), _BATCH_BYTES):
            out.write(write(*featurize(batch)))
    with atomic_output(part_path + ".json", "w") as f:
        json.dump({"lines": report.num_lines, "bad_lines": report.bad_lines}, f)


def extract_ngrams(vocab_path: str, input_path: str, output_path: str, workers: int = 1,
                   chunk_bytes: int = 32 << 20) -> int:
    """Write the in-vocabulary features of every input line, one line each.

    Work is split into line-aligned chunks written to ``OUTPUT.parts/``; a
    rerun after a kill skips the finished chunks and removes the killed run's
    temporary files.  One run at a time: a second is refused while the first
    holds ``OUTPUT.parts/``.  The output appears atomically once every chunk
    is done and the line counts agree.
    Returns the number of lines written.
    """
    try:
        check_input_file(vocab_path, "vocabulary")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e} (made by distill-ngram-dict)") from None
    mtime = os.path.getmtime(vocab_path)
    _vocab_featurizer(vocab_path, mtime)  # loads and checks it; forked workers inherit it
    check_input_file(input_path)
    check_output_path(output_path)
    parts_dir = output_path + ".parts"
    with output_job([output_path], parts_dir):
        return _extract(vocab_path, mtime, input_path, output_path, parts_dir, workers, chunk_bytes)


def _extract(vocab_path: str, mtime: float, input_path: str, output_path: str, parts_dir: str,
             workers: int, chunk_bytes: int) -> int:
    size = os.path.getsize(input_path)
    offsets = find_offsets(input_path, max(workers, size // chunk_bytes + 1))
    manifest = {
        "input": os.path.abspath(input_path), "size": size,
        "mtime": os.path.getmtime(input_path), "vocab": os.path.abspath(vocab_path),
        "vocab_mtime": mtime, "offsets": offsets,
    }
    prepare_work_dir(parts_dir, manifest)
    tasks, done = [], []
    for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
        part = os.path.join(parts_dir, f"part-{i:05d}")
        if os.path.exists(part) and os.path.exists(part + ".json"):
            done.append(i)
        else:
            tasks.append((vocab_path, mtime, input_path, a, b, part))
    if done:
        logger.info("resuming: %d of %d chunks already done", len(done), len(offsets) - 1)
    todo_bytes = sum(t[4] - t[3] for t in tasks)
    map_chunks(_extract_chunk, tasks, workers, todo_bytes, "extracting n-grams")

    bad, written = [], 0
    with atomic_output(output_path, "wb") as out:
        for i in range(len(offsets) - 1):
            part = os.path.join(parts_dir, f"part-{i:05d}")
            with open(part + ".json") as f:
                info = json.load(f)
            bad += [written + j + 1 for j in info["bad_lines"]]
            written += info["lines"]
            with open(part, "rb") as f:
                while True:
                    buf = f.read(1 << 24)
                    if not buf:
                        break
                    out.write(buf)
        expected = count_lines(input_path)
        if written != expected:  # never leave a misaligned output behind
            raise RuntimeError(f"{output_path}: wrote {written} lines for {expected} input lines")
    remove_work_dir(parts_dir)
    warn_bad_utf8(input_path, bad)
    logger.info("%s: %d lines -> %s", input_path, written, output_path)
    return written
