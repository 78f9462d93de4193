"""Vectorized n-gram counting and lookup on integer token ids.

Building a Python string for every n-gram occurrence costs about as much as
scikit-learn's CountVectorizer.  Here tokens become integer ids once, and an
n-gram becomes a row of ``ceil(max_n / 2)`` uint64 words (two 32-bit ids per
word, ``NONE`` past its end), so counting and lookup are numpy sorts over
whole batches.  Rows are grouped by a 64-bit hash and then compared word by
word, so results are exact; strings are built only for the final vocabulary.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

NONE = np.uint64(0xFFFFFFFF)  # id slot past the end of a shorter n-gram
UNKNOWN = 0xFFFFFFFE  # id of a token outside a lookup vocabulary
NEWLINE = "\n"  # the token that ends a line in a tokenized batch
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


class TokenIndex(dict):
    """token -> id, assigning the next id to a new token ("\n" is id 0)."""

    def __init__(self):
        super().__init__({NEWLINE: 0})

    def __missing__(self, token):
        value = self[token] = len(self)
        return value


class TokenLookup(dict):
    """token -> id of a fixed vocabulary, ``UNKNOWN`` for the rest."""

    def __missing__(self, token):
        return UNKNOWN


def n_words(max_n: int) -> int:
    return (max_n + 1) // 2


def encode_lines(tokens: List[str], index) -> Tuple[np.ndarray, np.ndarray]:
    """Token ids of a tokenized batch ("\n" ends each line) and each id's line number."""
    flat = np.fromiter(map(index.__getitem__, tokens), dtype=np.uint64, count=len(tokens))
    newline = flat == np.uint64(index[NEWLINE])
    line_of = np.cumsum(newline) - newline
    keep = ~newline
    return flat[keep], line_of[keep]


def ngram_starts(line_of: np.ndarray, n: int) -> np.ndarray:
    """Start positions of the n-grams that lie within one line."""
    if len(line_of) < n:
        return np.zeros(0, dtype=np.int64)
    p = np.arange(len(line_of) - n + 1, dtype=np.int64)
    return p[line_of[p] == line_of[p + n - 1]]


def pack(flat: np.ndarray, starts: np.ndarray, n: int, words: int) -> np.ndarray:
    """Rows of packed ids, shape [len(starts), words], for n-grams starting at ``starts``."""
    out = np.empty((len(starts), words), dtype=np.uint64)
    for w in range(words):
        a, b = 2 * w, 2 * w + 1
        hi = flat[starts + a] if a < n else np.full(len(starts), NONE)
        lo = flat[starts + b] if b < n else np.full(len(starts), NONE)
        out[:, w] = (hi << _S32) | lo
    return out


def pack_ids(id_lists: Sequence[Sequence[int]], words: int) -> np.ndarray:
    """Packed rows for explicit id sequences (vocabulary entries)."""
    cols = np.full((len(id_lists), 2 * words), NONE, dtype=np.uint64)
    for i, ids in enumerate(id_lists):
        cols[i, : len(ids)] = ids
    return (cols[:, 0::2] << _S32) | cols[:, 1::2]


def unpack(rows: np.ndarray) -> np.ndarray:
    """Ids [m, 2 * words] of packed rows (``NONE`` past each n-gram's end)."""
    cols = np.empty((rows.shape[0], 2 * rows.shape[1]), dtype=np.uint64)
    cols[:, 0::2] = rows >> _S32
    cols[:, 1::2] = rows & _MASK32
    return cols


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 with good avalanche."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def row_hash(rows: np.ndarray) -> np.ndarray:
    h = _mix(rows[:, 0])
    for w in range(1, rows.shape[1]):
        h = _mix(h ^ rows[:, w])
    return h


def unique_rows(rows: np.ndarray, counts: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Distinct rows and their summed counts (each row counts 1 without ``counts``)."""
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=np.int64)
    h = row_hash(rows)
    order = np.argsort(h, kind="stable")
    h, rows = h[order], rows[order]
    new = np.empty(len(h), dtype=bool)
    new[0] = True
    np.not_equal(h[1:], h[:-1], out=new[1:])
    if rows.shape[1] > 1:
        # equal hashes of different rows: split those runs exactly (astronomically rare)
        differ = (rows[1:] != rows[:-1]).any(axis=1)
        if (differ & ~new[1:]).any():
            order2 = np.lexsort(rows.T[::-1])
            rows, h = rows[order2], h[order2]
            order = order[order2]
            new[1:] = (rows[1:] != rows[:-1]).any(axis=1)
    group = np.cumsum(new) - 1
    weights = None if counts is None else counts[order]
    summed = np.bincount(group, weights=weights, minlength=int(group[-1]) + 1)
    return rows[new], summed.astype(np.int64)


class NgramTable:
    """Exact n-gram counts over token ids, merged lazily to bound sorting work."""

    def __init__(self, words: int):
        self.words = words
        self.rows = np.zeros((0, words), dtype=np.uint64)
        self.counts = np.zeros(0, dtype=np.int64)
        self._pending: List[Tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, rows: np.ndarray, counts: Optional[np.ndarray] = None) -> None:
        rows, counts = unique_rows(rows, counts)
        self._pending.append((rows, counts))
        self._pending_size += len(rows)
        if self._pending_size > max(len(self.rows), 1 << 20):
            self.merge()

    def merge(self) -> None:
        if self._pending:
            rows = np.concatenate([self.rows] + [r for r, _ in self._pending])
            counts = np.concatenate([self.counts] + [c for _, c in self._pending])
            self.rows, self.counts = unique_rows(rows, counts)
            self._pending, self._pending_size = [], 0

    def __len__(self) -> int:
        return len(self.rows) + self._pending_size

    def prune(self, min_count: int) -> None:
        self.merge()
        keep = self.counts >= min_count
        self.rows, self.counts = self.rows[keep], self.counts[keep]


def remap_rows(rows: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """Packed rows with every id replaced by ``mapping[id]`` (``NONE`` kept)."""
    cols = unpack(rows)
    real = cols != NONE
    cols[real] = mapping[cols[real].astype(np.int64)]
    return (cols[:, 0::2] << _S32) | cols[:, 1::2]


class RowLookup:
    """Exact membership of packed rows in a fixed set (the vocabulary).

    An open-addressing hash table with linear probing at load factor <= 1/4,
    built and probed with whole-array numpy operations.  Each slot keeps the
    entry's 64-bit hash, so probing compares hashes only; a hash hit is then
    confirmed by comparing the rows themselves.
    """

    def __init__(self, rows: np.ndarray):
        self.rows = rows
        size = 1 << max(4, int(4 * max(len(rows), 1) - 1).bit_length())
        self.mask = np.uint64(size - 1)
        self.slot_ids = np.full(size, -1, dtype=np.int64)
        self.slot_hashes = np.zeros(size, dtype=np.uint64)
        hashes = row_hash(rows)
        pending = np.arange(len(rows), dtype=np.int64)
        pos = hashes & self.mask
        while len(pending):
            free = self.slot_ids[pos] < 0
            # of the rows wanting one free slot, the first takes it; the rest probe on
            taken, first = np.unique(pos[free], return_index=True)
            winners = np.flatnonzero(free)[first]
            self.slot_ids[taken] = pending[winners]
            self.slot_hashes[taken] = hashes[pending[winners]]
            placed = np.zeros(len(pending), dtype=bool)
            placed[winners] = True
            pending, pos = pending[~placed], (pos[~placed] + np.uint64(1)) & self.mask

    def find(self, rows: np.ndarray) -> np.ndarray:
        """Entry id of each row, or -1."""
        result = np.full(len(rows), -1, dtype=np.int64)
        h = row_hash(rows)
        active = np.arange(len(rows), dtype=np.int64)
        pos = h & self.mask
        while len(active):
            ids = self.slot_ids[pos]
            same = (self.slot_hashes[pos] == h) & (ids >= 0)
            if same.any():
                cand = np.flatnonzero(same)
                ok = (self.rows[ids[cand]] == rows[active[cand]]).all(axis=1)
                result[active[cand[ok]]] = ids[cand[ok]]
                same[cand[~ok]] = False  # equal hash, other row: keep probing
            more = (ids >= 0) & ~same
            active, pos, h = active[more], (pos[more] + np.uint64(1)) & self.mask, h[more]
        return result


def token_ids_of(entries: Sequence[str], joiner: str) -> Tuple[Dict[str, int], List[List[int]]]:
    """A token lookup over vocabulary n-grams and each entry's ids."""
    index = TokenIndex()
    ids = [[index[t] for t in gram.split(joiner)] for gram in entries]
    return TokenLookup(index), ids
