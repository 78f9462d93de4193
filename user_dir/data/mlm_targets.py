"""Masked-LM inputs as DistilBERT draws them (Sanh et al. 2019), as datasets fairseq reads.

* ``DocumentChunks``: each document (one line of the corpus, binarized with the
  teacher's dictionary, ending in ``</s>``) cut into pieces of at most
  ``max_tokens - 2`` tokens, each read as ``<s> piece </s>``; pieces shorter than
  ``min_tokens`` (the markers included) are dropped, as DistilBERT drops
  sequences of 11 tokens or fewer.
* ``smoothed_probabilities``: DistilBERT's ``--mlm_smoothing``: a token is drawn
  as a target with probability proportional to ``count ** -smoothing`` (rare
  tokens more often than their frequency), special tokens never.
* ``SmoothedMaskDataset``: per sequence, ``ceil(mask_prob * n)`` of its ``n``
  real tokens drawn without replacement by those weights; of the targets 80%
  become ``<mask>``, 10% stay, 10% a random real token.  The draw depends on
  (seed, epoch, index) only, so a resumed run draws what it would have.  Two
  views share it: the masked source, and the target (the original token at each
  target, padding elsewhere).
"""

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from fairseq.data import BaseWrapperDataset, FairseqDataset, data_utils


class DocumentChunks(FairseqDataset):
    def __init__(self, dataset, sizes: np.ndarray, max_tokens: int, min_tokens: int, bos: int, eos: int):
        if max_tokens < 3:
            raise ValueError(f"--tokens-per-sample {max_tokens}: needs room for <s>, a token and </s>")
        self.dataset, self.bos, self.eos = dataset, bos, eos
        body = max_tokens - 2
        docs, starts, lengths = [], [], []
        for doc, size in enumerate(np.asarray(sizes, dtype=np.int64)):
            n = int(size) - 1  # the document's own </s> goes: every piece gets one
            for start in range(0, max(n, 0), body):
                length = min(body, n - start)
                if length + 2 >= min_tokens:
                    docs.append(doc)
                    starts.append(start)
                    lengths.append(length)
        self.docs = np.asarray(docs, dtype=np.int64)
        self.starts = np.asarray(starts, dtype=np.int64)
        self._sizes = np.asarray(lengths, dtype=np.int64) + 2

    def __len__(self):
        return len(self.docs)

    def __getitem__(self, index):
        doc = self.dataset[int(self.docs[index])]
        start = int(self.starts[index])
        piece = doc[start:start + int(self._sizes[index]) - 2]
        return torch.cat([piece.new([self.bos]), piece, piece.new([self.eos])])

    @property
    def sizes(self):
        return self._sizes

    def num_tokens(self, index):
        return int(self._sizes[index])

    def size(self, index):
        return int(self._sizes[index])

    @property
    def supports_prefetch(self):
        return False


def token_counts(dataset, vocab_size: int) -> np.ndarray:
    """How often each token id occurs in ``dataset`` (a fairseq indexed dataset)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for i in range(len(dataset)):
        ids = dataset[i].numpy()
        if len(ids) and ids.max() >= vocab_size:
            raise ValueError(f"row {i} holds token id {int(ids.max())}, past the dictionary's {vocab_size}")
        counts += np.bincount(ids, minlength=vocab_size)
    return counts


def smoothed_probabilities(counts: np.ndarray, smoothing: float, special: Sequence[int]) -> np.ndarray:
    """count^-smoothing (counts of 0 read as 1), 0 for special tokens, normalised."""
    p = np.maximum(counts.astype(np.float64), 1.0) ** -smoothing
    p[list(special)] = 0.0
    total = p.sum()
    if total <= 0:
        raise ValueError("every token is special: nothing can be a masked-LM target")
    return p / total


class SmoothedMaskDataset(BaseWrapperDataset):
    @classmethod
    def apply_mask(cls, dataset, **kwargs):
        """(source, target) views of one draw: the target view reads the source's (cached) draw."""
        source = cls(dataset, return_targets=False, **kwargs)
        target = cls(dataset, return_targets=True, **kwargs)
        target._drawer = source
        return source, target

    def __init__(self, dataset, token_probs: np.ndarray, mask_idx: int, pad_idx: int, seed: int = 1,
                 mask_prob: float = 0.15, keep_prob: float = 0.1, random_prob: float = 0.1,
                 return_targets: bool = False):
        super().__init__(dataset)
        if not 0 < mask_prob <= 1 or keep_prob < 0 or random_prob < 0 or keep_prob + random_prob > 1:
            raise ValueError(f"mask probabilities: --mlm-mask-prob {mask_prob} in (0, 1], keep {keep_prob} and "
                             f"random {random_prob} at least 0, their sum at most 1")
        self.token_probs = token_probs
        self.real = token_probs > 0
        self.random_tokens = np.flatnonzero(self.real)
        self.mask_idx, self.pad_idx, self.seed = mask_idx, pad_idx, seed
        self.mask_prob, self.keep_prob, self.random_prob = mask_prob, keep_prob, random_prob
        self.return_targets = return_targets
        self._drawer = self
        self.epoch = 0

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False  # a new draw every epoch

    def set_epoch(self, epoch, **unused):
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, index):
        source, target = self._drawer._draw(self.seed, self.epoch, index)
        return target if self.return_targets else source

    @lru_cache(maxsize=8)
    def _draw(self, seed: int, epoch: int, index: int):
        tokens = self.dataset[index]
        ids = tokens.numpy()
        weights = self.token_probs[ids]
        candidates = np.flatnonzero(weights > 0)
        source, target = tokens.clone(), torch.full_like(tokens, self.pad_idx)
        if not len(candidates):
            return source, target
        with data_utils.numpy_seed(seed, epoch, index):
            k = min(len(candidates), math.ceil(self.mask_prob * len(candidates)))
            w = weights[candidates]
            chosen = np.random.choice(candidates, size=k, replace=False, p=w / w.sum())
            action = np.random.random(k)
            random_ids = np.random.choice(self.random_tokens, size=k)
        chosen_t = torch.as_tensor(chosen, dtype=torch.long)
        target[chosen_t] = tokens[chosen_t]
        masked = action >= self.keep_prob + self.random_prob  # 80%: <mask>
        randomised = action < self.random_prob  # 10%: a random real token; the other 10% stay
        source[chosen_t[torch.as_tensor(masked)]] = self.mask_idx
        source[chosen_t[torch.as_tensor(randomised)]] = torch.as_tensor(random_ids[randomised], dtype=tokens.dtype)
        return source, target
