"""Compiled n-gram featurization of raw text against a fixed vocabulary (numba).

``BatchFeaturizer`` (extraction and DAN inference) runs here: a batch of
texts becomes one array of code points, and one compiled pass per batch
tokenizes it, looks each token up in the vocabulary and walks the n-gram
trie, writing features in text order.  Python touches each batch, never
each word.  The regex tokenizers of :mod:`.ngrams` stay the definition:
character classes come from the same ``re`` engine (``\\w`` and ``\\s`` of
every code point), and tests hold this path equal to the regex one.

Counting (``distill-ngram-dict``) tokenizes here too; its vocabulary grows
as it reads, so each distinct token of a batch becomes a string once and gets
its id from a dict (``growing_token_ids``), and ``NgramCounter`` counts the
n-grams of the ids in a compiled hash table.
"""

import logging
from functools import lru_cache
from typing import Dict, Sequence, Tuple

import numpy as np
from numba import njit

from .ngram_table import KeyLookup
from .text_io import clean_text

# numba logs every compiled bytecode at DEBUG, and importing fairseq leaves the root logger there
logging.getLogger("numba").setLevel(logging.WARNING)

# character classes (one byte per code point)
OTHER, WORD, SPACE = 0, 1, 2
# tokenizer modes: the three patterns of ngrams._TOKEN_PATTERNS
MODES = {"default": 0, "sklearn": 1, "whitespace": 2}
_APOSTROPHE = 0x27
_REPLACEMENT = 0xFFFD
_NUM_CODEPOINTS = 0x110000


@lru_cache(maxsize=None)
def char_classes(joiner: str) -> np.ndarray:
    """WORD where Python's ``re`` matches ``\\w``, SPACE where it matches ``\\s``
    and for control characters and ``joiner`` (which the regex path turns into
    spaces first), OTHER elsewhere; for every code point (surrogates included)."""
    import re
    import unicodedata

    every = np.arange(_NUM_CODEPOINTS, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")
    table = np.zeros(_NUM_CODEPOINTS, dtype=np.uint8)
    table[[m.start() for m in re.finditer(r"\w", every)]] = WORD
    table[[m.start() for m in re.finditer(r"\s", every)]] = SPACE
    table[[c for c in range(0xA0) if unicodedata.category(chr(c)) == "Cc"]] = SPACE
    table[ord(joiner)] = SPACE
    return table


def codepoints(text: str) -> np.ndarray:
    """The code points of a string (lone surrogates kept as their values)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


# ------------------------------------------------------------------ hashing

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True, nogil=True)
def _mix(x):
    """splitmix64's finalizer, as ``ngram_table._mix``."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


@njit(cache=True, nogil=True)
def _span_hash(cps, a, b, seed):
    h = seed
    for i in range(a, b):
        h = (h ^ np.uint64(cps[i])) * _FNV_PRIME
    return _mix(h)


@njit(cache=True, nogil=True)
def _probe(slots, mask, key):
    """The value of ``key`` in a ``KeyLookup`` table, or -1."""
    pos = _mix(key) & mask
    while True:
        value = slots[pos, 1]
        if value == 0:
            return -1
        if slots[pos, 0] == key:
            return np.int64(value) - 1
        pos = (pos + np.uint64(1)) & mask


@njit(cache=True, nogil=True)
def _span_hashes(cps, starts, seed):
    out = np.empty(len(starts) - 1, dtype=np.uint64)
    for k in range(len(starts) - 1):
        out[k] = _span_hash(cps, starts[k], starts[k + 1], seed)
    return out


class TokenTable:
    """Token string -> id by the hash of its code points, verified exactly."""

    def __init__(self, lookup: Dict[str, int]):
        tokens = sorted(lookup, key=lookup.__getitem__)
        ids = np.fromiter(map(lookup.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        self.starts = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.starts[1:])
        self.cps = codepoints("".join(tokens)) if tokens else np.zeros(0, dtype=np.uint32)
        self.ids = ids
        # distinct keys are needed; a 64-bit collision among tokens picks another seed
        for seed in range(0xCBF29CE484222325, 0xCBF29CE484222325 + 64):
            self.seed = np.uint64(seed)
            keys = _span_hashes(self.cps, self.starts, self.seed)
            if len(np.unique(keys)) == len(keys):
                break
        else:  # pragma: no cover
            raise RuntimeError("no collision-free token hash found")
        # values index the token's row (its code points), which holds its id
        self.table = KeyLookup(keys, np.arange(len(tokens), dtype=np.int64))


# ------------------------------------------------------------------ the pass


@njit(cache=True, nogil=True)
def _ascii_lower(cps):
    out = cps.copy()
    for i in range(len(out)):
        if 65 <= out[i] <= 90:
            out[i] += 32
    return out


@njit(cache=True, nogil=True)
def _tokenize(cps, line_begin, line_end, classes, mode):
    """Token spans and lines of every line, as the regex of ``mode`` finds them.

    The arrays grow as needed: sized by the text, they would take 24 bytes
    per character of a batch of long reviews.  They grow before a line, to
    room for as many tokens as it has characters: grown inside the character
    loop (arrays reassigned there), the loop ran 8x slower.  The scan stays
    inline for the same reason: as a compiled helper called per token it ran
    4x slower."""
    cap = max(16, len(cps) // 4)
    tok_start = np.empty(cap, dtype=np.int64)
    tok_end = np.empty(cap, dtype=np.int64)
    tok_line = np.empty(cap, dtype=np.int64)
    t = 0
    for line in range(len(line_begin)):
        i, end = line_begin[line], line_end[line]
        if t + (end - i) > cap:
            cap = max(2 * cap, t + (end - i))
            tok_start = _grown(tok_start, t, cap)
            tok_end = _grown(tok_end, t, cap)
            tok_line = _grown(tok_line, t, cap)
        while i < end:
            c = classes[cps[i]]
            j = -1
            if mode == 2:  # \S+
                if c != SPACE:
                    j = i + 1
                    while j < end and classes[cps[j]] != SPACE:
                        j += 1
            elif mode == 1:  # \b\w\w+\b: word runs of two or more
                if c == WORD:
                    j = i + 1
                    while j < end and classes[cps[j]] == WORD:
                        j += 1
                    if j - i < 2:
                        i = j
                        continue
            else:  # \w+(?:'\w+)*|'\w+|[^\w\s\ufffd]
                if c == WORD:
                    j = i + 1
                    while True:
                        while j < end and classes[cps[j]] == WORD:
                            j += 1
                        if j + 1 < end and cps[j] == _APOSTROPHE and classes[cps[j + 1]] == WORD:
                            j += 2
                        else:
                            break
                elif cps[i] == _APOSTROPHE and i + 1 < end and classes[cps[i + 1]] == WORD:
                    j = i + 2
                    while j < end and classes[cps[j]] == WORD:
                        j += 1
                elif c != SPACE and cps[i] != _REPLACEMENT:
                    j = i + 1
            if j < 0:
                i += 1
                continue
            tok_start[t] = i
            tok_end[t] = j
            tok_line[t] = line
            t += 1
            i = j
    return tok_start[:t], tok_end[:t], tok_line[:t]


@njit(cache=True, nogil=True)
def _grown(a, used, size):
    bigger = np.empty(size, dtype=a.dtype)
    bigger[:used] = a[:used]
    return bigger


@njit(cache=True, nogil=True)
def _token_ids(cps, tok_start, tok_end, n, seed, tt_slots, tt_mask, tt_cps, tt_starts, tt_ids):
    out = np.empty(n, dtype=np.int64)
    for k in range(n):
        a, b = tok_start[k], tok_end[k]
        row = _probe(tt_slots, tt_mask, _span_hash(cps, a, b, seed))
        found = -1
        if row >= 0:
            ra, rb = tt_starts[row], tt_starts[row + 1]
            if rb - ra == b - a:
                found = tt_ids[row]
                for i in range(b - a):
                    if tt_cps[ra + i] != cps[a + i]:
                        found = -1
                        break
        out[k] = found
    return out


@njit(cache=True, nogil=True)
def _walk(ids, tok_line, n, num_lines, lo, hi, slots, mask, has_child, entry_of_node):
    """In-vocabulary n-grams in text order (by end, shorter first): entries, count per line.

    The trie is walked a level at a time: ``nodes[k, s]`` is the node of the
    k + 1 tokens from ``s`` (-1 where that span begins no entry).  The probes
    of one level do not depend on each other, so the CPU overlaps their cache
    misses (the table is larger than the cache, and the model's own lookups
    evict it between batches); a walk position by position waited for each."""
    nodes = np.full((hi, n), -1, dtype=np.int64)
    nodes[0, :] = ids[:n]
    for k in range(1, hi):
        for s in range(n - k):
            prev = nodes[k - 1, s]
            if prev >= 0 and has_child[prev]:
                tid = ids[s + k]
                if tid >= 0 and tok_line[s + k] == tok_line[s]:
                    nodes[k, s] = _probe(slots, mask, (np.uint64(prev) << np.uint64(32)) | np.uint64(tid))
    # a token ends at most hi - lo + 1 entries: sized for all of them (as
    # ``nodes`` is), since growing it inside the loop made the loop twice as slow
    out = np.empty(max(16, (hi - lo + 1) * n), dtype=np.int64)
    per_line = np.zeros(num_lines, dtype=np.int64)
    m = 0
    for e in range(n):
        line = tok_line[e]
        for length in range(1, hi + 1):
            s = e - length + 1
            if s < 0 or tok_line[s] != line:
                break
            node = nodes[length - 1, s]
            if node >= 0 and length >= lo:
                entry = entry_of_node[node]
                if entry >= 0:
                    out[m] = entry
                    m += 1
                    per_line[line] += 1
    return out[:m].copy(), per_line


def prepare_lines(lines: Sequence[str], lower: bool):
    """The batch as one string, its code points (lower-cased if asked), where each line begins
    and ends in them (one separator character between lines; a text's own newlines are spaces
    to the tokenizers), and whether the string still needs ``str.lower`` (ASCII batches are
    lower-cased in the code points only)."""
    joined = "\n".join(lines)
    if "<" in joined:  # HTML line breaks become spaces (text_io.clean_text), which may shorten a line
        lines = list(map(clean_text, lines))
        joined = "\n".join(lines)
    ascii_lower = lower and joined.isascii()
    if lower and not ascii_lower:  # lower-casing may change a non-ASCII text's length: line by line
        lines = [t.lower() for t in lines]
        joined = "\n".join(lines)
    cps = codepoints(joined)
    if ascii_lower:  # str.lower is ASCII's A-Z -> a-z here, and costs more than the whole pass
        cps = _ascii_lower(cps)
    lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    begin = np.zeros(len(lines), dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=begin[1:])
    return joined, ascii_lower, cps, begin, begin + lengths


def featurize(lines: Sequence[str], mode: int, lower: bool, classes: np.ndarray, tokens: TokenTable,
              trie, lo: int, hi: int) -> Tuple[np.ndarray, np.ndarray]:
    """Entry ids of every line's features, line after line, and the number per line.

    Joiner and control characters are spaces by ``classes``.  ``trie`` is an
    ``NgramTrie`` over the ids of ``tokens``.
    """
    _, _, cps, begin, end = prepare_lines(lines, lower)
    return featurize_codepoints(cps, begin, end, mode, classes, tokens, trie, lo, hi)


def featurize_codepoints(cps: np.ndarray, begin: np.ndarray, end: np.ndarray, mode: int, classes: np.ndarray,
                         tokens: TokenTable, trie, lo: int, hi: int) -> Tuple[np.ndarray, np.ndarray]:
    """``featurize`` of the lines ``cps[begin[i]:end[i]]`` of ``prepare_lines``' code points.

    Compiled all through, with the GIL released: threads may take runs of
    lines of one batch."""
    tok_start, tok_end, tok_line = _tokenize(cps, begin, end, classes, mode)
    n = len(tok_start)
    t = tokens.table
    ids = _token_ids(cps, tok_start, tok_end, n, tokens.seed, t.slots, t.mask, tokens.cps, tokens.starts,
                     tokens.ids)
    k = trie.table
    return _walk(ids, tok_line, n, len(begin), lo, hi, k.slots, k.mask, trie.has_child, trie.entry_of_node)


# ------------------------------------------------------------------ counting

_COUNT_SEED = np.uint64(0xCBF29CE484222325)
_NONE = np.uint64(0xFFFFFFFF)  # ngram_table.NONE: id slot past the end of a shorter n-gram


@njit(cache=True, nogil=True)
def _spans_hashes(cps, tok_start, tok_end, seed):
    out = np.empty(len(tok_start), dtype=np.uint64)
    for k in range(len(tok_start)):
        out[k] = _span_hash(cps, tok_start[k], tok_end[k], seed)
    return out


@njit(cache=True, nogil=True)
def _same_as(cps, tok_start, tok_end, rep):
    """Whether every token's code points equal those of token ``rep[k]``."""
    for k in range(len(tok_start)):
        r = rep[k]
        if r == k:
            continue
        a, b, ra = tok_start[k], tok_end[k], tok_start[r]
        if tok_end[r] - ra != b - a:
            return False
        for i in range(b - a):
            if cps[ra + i] != cps[a + i]:
                return False
    return True


def growing_token_ids(lines: Sequence[str], mode: int, lower: bool, classes: np.ndarray, index):
    """Token ids of a batch for counting, from ``index`` (a ``TokenIndex``, which gives a new
    token the next id), and the line of each token; or None where two different tokens of the
    batch share a 64-bit hash (then the caller takes the regex path for the batch).

    Tokens are grouped by the hash of their code points and every token is checked against
    its group's first, so each distinct token becomes a Python string once per batch."""
    joined, needs_lower, cps, begin, end = prepare_lines(lines, lower)
    tok_start, tok_end, tok_line = _tokenize(cps, begin, end, classes, mode)
    hashes = _spans_hashes(cps, tok_start, tok_end, _COUNT_SEED)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if not _same_as(cps, tok_start, tok_end, first[inverse]):
        return None
    tokens = [joined[a:b] for a, b in zip(tok_start[first].tolist(), tok_end[first].tolist())]
    if needs_lower:
        tokens = [t.lower() for t in tokens]
    ids = np.fromiter(map(index.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    return ids[inverse], tok_line


@njit(cache=True, nogil=True)
def _row_hash(keys, pos):
    h = _mix(keys[pos, 0])
    for w in range(1, keys.shape[1]):
        h = _mix(h ^ keys[pos, w])
    return h


@njit(cache=True, nogil=True)
def _count_ngrams(ids, tok_line, start, lo, hi, keys, counts, used, limit, row):
    """Count the n-grams (``lo``..``hi`` tokens, within one line) that end at ``start`` and
    after; stop before an end whose n-grams could take the distinct rows past ``limit``.
    ``row`` is a [1, words] scratch array.  Returns the next end and the distinct count."""
    mask = np.uint64(len(counts) - 1)
    words = keys.shape[1]
    e = start
    while e < len(ids):
        if used + hi - lo + 1 > limit:
            break
        for length in range(lo, hi + 1):
            s = e - length + 1
            if s < 0 or tok_line[s] != tok_line[e]:
                break
            for w in range(words):  # ngram_table's row layout: two ids per word, NONE past the end
                a = 2 * w
                high = np.uint64(ids[s + a]) if a < length else _NONE
                low = np.uint64(ids[s + a + 1]) if a + 1 < length else _NONE
                row[0, w] = (high << np.uint64(32)) | low
            pos = _row_hash(row, 0) & mask
            while True:
                if counts[pos] == 0:
                    keys[pos] = row[0]
                    counts[pos] = 1
                    used += 1
                    break
                same = True
                for w in range(words):
                    if keys[pos, w] != row[0, w]:
                        same = False
                        break
                if same:
                    counts[pos] += 1
                    break
                pos = (pos + np.uint64(1)) & mask
        e += 1
    return e, used


@njit(cache=True, nogil=True)
def _insert_rows(keys, counts, rows, row_counts):
    mask = np.uint64(len(counts) - 1)
    for i in range(len(rows)):
        pos = _row_hash(rows, i) & mask
        while counts[pos] != 0:
            pos = (pos + np.uint64(1)) & mask
        keys[pos] = rows[i]
        counts[pos] = row_counts[i]


class NgramCounter:
    """Exact n-gram counts in an open-addressing table of packed rows (load <= 1/2).

    Rows are ``ngram_table``'s (two 32-bit token ids per uint64 word), so the
    counts of several workers merge in an ``NgramTable``.  One
    compiled pass per batch counts every occurrence in place: no sort.
    """

    _MIN_SLOTS = 1 << 12

    def __init__(self, words: int):
        self.words = words
        self.used = 0
        self._alloc(self._MIN_SLOTS)
        self._row = np.empty((1, words), dtype=np.uint64)

    def _alloc(self, slots: int) -> None:
        self.keys = np.empty((slots, self.words), dtype=np.uint64)
        self.slot_counts = np.zeros(slots, dtype=np.int64)

    def __len__(self) -> int:
        return self.used

    def add(self, ids: np.ndarray, tok_line: np.ndarray, lo: int, hi: int) -> None:
        """Count the n-grams of token ids ``ids`` whose tokens share a line (``tok_line``)."""
        e = 0
        while True:
            e, self.used = _count_ngrams(ids, tok_line, e, lo, hi, self.keys, self.slot_counts,
                                         self.used, len(self.slot_counts) // 2, self._row)
            if e == len(ids):
                return
            self._rebuild(*self.rows_and_counts(), 2 * len(self.slot_counts))

    def rows_and_counts(self) -> Tuple[np.ndarray, np.ndarray]:
        full = self.slot_counts > 0
        return self.keys[full], self.slot_counts[full]

    def prune(self, min_count: int) -> None:
        rows, counts = self.rows_and_counts()
        keep = counts >= min_count
        rows, counts = rows[keep], counts[keep]
        self._rebuild(rows, counts, max(self._MIN_SLOTS, 1 << int(2 * max(len(rows), 1) - 1).bit_length()))

    def _rebuild(self, rows: np.ndarray, counts: np.ndarray, slots: int) -> None:
        self._alloc(slots)
        _insert_rows(self.keys, self.slot_counts, rows, counts)
        self.used = len(rows)


# ------------------------------------------------------------------ writing


@njit(cache=True, nogil=True)
def _feature_lines(seq, per_line, blob, starts):
    """UTF-8 text of feature lines: entry ``seq[i]``'s bytes (``blob[starts[e]:starts[e + 1]]``)
    separated by spaces, one line per ``per_line`` count (an empty line for 0)."""
    size = len(per_line)  # newlines
    for x in seq:
        size += starts[x + 1] - starts[x] + 1
    out = np.empty(size, dtype=np.uint8)
    p = 0
    i = 0
    for line in range(len(per_line)):
        for j in range(per_line[line]):
            if j:
                out[p] = 32
                p += 1
            e = seq[i]
            i += 1
            a, n = starts[e], starts[e + 1] - starts[e]
            out[p:p + n] = blob[a:a + n]
            p += n
        out[p] = 10
        p += 1
    return out[:p]


class FeatureWriter:
    """Lines of feature strings (``distill-extract-ngrams``' output) from entry ids, compiled."""

    def __init__(self, strings: Sequence[str]):
        encoded = [s.encode("utf-8") for s in strings]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        self.starts = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.starts[1:])
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __call__(self, seq: np.ndarray, per_line: np.ndarray) -> bytes:
        return _feature_lines(seq, per_line, self.blob, self.starts).tobytes()
