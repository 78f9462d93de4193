"""Compiled n-gram featurization of raw text against a fixed vocabulary (numba).

``BatchFeaturizer`` (extraction and DAN inference) runs here: a batch of
texts becomes one array of code points, and one compiled pass per batch
tokenizes it, looks each token up in the vocabulary and walks the n-gram
trie, writing features in text order.  Python touches each batch, never
each word.  The regex tokenizers of :mod:`.ngrams` stay the definition:
character classes come from the same ``re`` engine (``\\w`` and ``\\s`` of
every code point), and tests hold this path equal to the regex one.

Counting (``distill-ngram-dict``) still tokenizes through the regex path,
since its vocabulary grows as it reads.
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
    per character of a batch of long reviews."""
    cap = max(16, len(cps) // 4)
    tok_start = np.empty(cap, dtype=np.int64)
    tok_end = np.empty(cap, dtype=np.int64)
    tok_line = np.empty(cap, dtype=np.int64)
    t = 0
    for line in range(len(line_begin)):
        i, end = line_begin[line], line_end[line]
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
            if t == cap:
                cap *= 2
                tok_start = _grown(tok_start, t, cap)
                tok_end = _grown(tok_end, t, cap)
                tok_line = _grown(tok_line, t, cap)
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

    ``cur[s % hi]`` holds the trie node of the tokens from start ``s`` to the
    current end (-1 once that prefix begins no entry)."""
    out = np.empty(max(16, 2 * n), dtype=np.int64)
    per_line = np.zeros(num_lines, dtype=np.int64)
    cur = np.full(hi, -1, dtype=np.int64)
    m = 0
    line_begin = 0
    for e in range(n):
        if e == 0 or tok_line[e] != tok_line[e - 1]:
            line_begin = e
        tid = ids[e]
        for length in range(1, min(hi, e - line_begin + 1) + 1):
            s = e - length + 1
            if length == 1:
                node = tid
            else:
                prev = cur[s % hi]
                node = -1
                if prev >= 0 and tid >= 0 and has_child[prev]:
                    node = _probe(slots, mask, (np.uint64(prev) << np.uint64(32)) | np.uint64(tid))
            cur[s % hi] = node
            if node >= 0 and length >= lo:
                entry = entry_of_node[node]
                if entry >= 0:
                    if m == len(out):
                        out = _grown(out, m, 2 * m)
                    out[m] = entry
                    m += 1
                    per_line[tok_line[e]] += 1
    return out[:m].copy(), per_line


def featurize(lines: Sequence[str], mode: int, lower: bool, classes: np.ndarray, tokens: TokenTable,
              trie, lo: int, hi: int) -> Tuple[np.ndarray, np.ndarray]:
    """Entry ids of every line's features, line after line, and the number per line.

    Joiner and control characters are spaces by ``classes``.  ``trie`` is an
    ``NgramTrie`` over the ids of ``tokens``.
    """
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
    # one separator character between lines; a text's own newlines are spaces to it
    begin = np.zeros(len(lines), dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=begin[1:])
    tok_start, tok_end, tok_line = _tokenize(cps, begin, begin + lengths, classes, mode)
    n = len(tok_start)
    t = tokens.table
    ids = _token_ids(cps, tok_start, tok_end, n, tokens.seed, t.slots, t.mask, tokens.cps, tokens.starts,
                     tokens.ids)
    k = trie.table
    return _walk(ids, tok_line, n, len(lines), lo, hi, k.slots, k.mask, trie.has_child, trie.entry_of_node)
