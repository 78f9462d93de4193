"""Distillation losses as pure functions: each returns a ``Term`` (sum, count).

``sum`` is the loss summed over what it was taken over and ``count`` how many
of those there were (examples, positions, elements, attention rows), so a
criterion can weigh terms by their means and still let fairseq divide by its
sample size: ``weighted(terms, weights, sample_size)``.  Shapes:

* logits ``[B, C]``; gold labels ``[B]``;
* hidden states ``[B, T, D]`` (batch first); ``padding_mask`` ``[B, T]``, True
  at padding, or None to take every position (TinyBERT and ROSITA do);
* attention maps ``[B, H, T, T]`` (probabilities, rows sum to 1); with a
  padding mask, the rows of padding queries are left out.
"""

from typing import Iterable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def _f(x: Tensor) -> Tensor:
    """Half precision up to float32; float32 and float64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class Term(NamedTuple):
    sum: Tensor
    count: int

    @property
    def mean(self) -> Tensor:
        return self.sum / max(self.count, 1)


def weighted(terms: Iterable[Term], weights: Iterable[float], sample_size: int) -> Tensor:
    """sum_i w_i * mean_i, times ``sample_size`` (fairseq divides by it again)."""
    total = None
    for term, w in zip(terms, weights):
        if w:
            part = w * term.mean * sample_size
            total = part if total is None else total + part
    if total is None:
        raise ValueError("every loss term has weight 0: nothing to train")
    return total


def cross_entropy(logits: Tensor, target: Tensor) -> Term:
    """Gold-label cross-entropy, per example."""
    return Term(F.cross_entropy(_f(logits), target.view(-1), reduction="sum"), logits.size(0))


def prediction_kl(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Term:
    """T^2 * KL(softmax(t/T) || softmax(s/T)) per example (Hinton et al.; DistilBERT)."""
    T = temperature
    s = F.log_softmax(_f(student) / T, dim=-1)
    t = F.log_softmax(_f(teacher) / T, dim=-1)
    return Term(F.kl_div(s, t, reduction="sum", log_target=True) * T * T, student.size(0))


def soft_cross_entropy(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Term:
    """-sum_c softmax(t/T)_c log softmax(s/T)_c per example, without T^2 (TinyBERT, ROSITA)."""
    T = temperature
    p = F.softmax(_f(teacher) / T, dim=-1)
    return Term(-(p * F.log_softmax(_f(student) / T, dim=-1)).sum(), student.size(0))


def logit_mse(student: Tensor, teacher: Tensor) -> Term:
    """||s - t||^2 summed over classes, per example (D-BERT)."""
    return Term((_f(student) - _f(teacher)).pow(2).sum(), student.size(0))


def _positions(padding_mask: Optional[Tensor], batch: int, length: int, device) -> Tensor:
    if padding_mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    return ~padding_mask.bool()


def _count(keep: Tensor, padding_mask: Optional[Tensor]) -> int:
    # without a mask the count is the shape's: no device-to-host sync per term
    return keep.numel() if padding_mask is None else int(keep.sum())


def hidden_mse(student: Tensor, teacher: Tensor, padding_mask: Optional[Tensor] = None) -> Term:
    """Squared error per element of ``[B, T, D]`` states (count: positions x D)."""
    keep = _positions(padding_mask, student.size(0), student.size(1), student.device)
    diff = (_f(student) - _f(teacher)).pow(2).sum(-1)
    return Term(diff.masked_select(keep).sum(), _count(keep, padding_mask) * student.size(-1))


def cosine(student: Tensor, teacher: Tensor, padding_mask: Optional[Tensor] = None) -> Term:
    """1 - cos(s, t) per position (DistilBERT's cosine embedding loss with target 1)."""
    keep = _positions(padding_mask, student.size(0), student.size(1), student.device)
    cos = F.cosine_similarity(_f(student), _f(teacher), dim=-1)
    return Term((1.0 - cos).masked_select(keep).sum(), _count(keep, padding_mask))


def attention_mse(student: Tensor, teacher: Tensor, padding_mask: Optional[Tensor] = None) -> Term:
    """Squared error per element of ``[B, H, T, T]`` maps (count: kept rows x T)."""
    B, H, T, _ = student.shape
    rows = _positions(padding_mask, B, T, student.device)[:, None, :].expand(B, H, T)
    diff = (_f(student) - _f(teacher)).pow(2).sum(-1)
    return Term(diff.masked_select(rows).sum(), _count(rows, padding_mask) * T)


def attention_kl(student: Tensor, teacher: Tensor, padding_mask: Optional[Tensor] = None,
                 eps: float = 1e-12) -> Term:
    """KL(teacher row || student row) per attention row (MiniLM)."""
    B, H, T, _ = student.shape
    rows = _positions(padding_mask, B, T, student.device)[:, None, :].expand(B, H, T)
    t = _f(teacher)
    kl = (t * (torch.log(t + eps) - torch.log(_f(student) + eps))).sum(-1)
    return Term(kl.masked_select(rows).sum(), _count(rows, padding_mask))


PREDICTION_LOSSES = {"kl": prediction_kl, "soft_ce": soft_cross_entropy, "mse": logit_mse}
ATTENTION_LOSSES = {"mse": attention_mse, "kl": attention_kl}
HIDDEN_LOSSES = {"mse": hidden_mse, "cosine": cosine}


def prediction_loss(kind: str, student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Term:
    if kind == "mse":
        return logit_mse(student, teacher)
    return PREDICTION_LOSSES[kind](student, teacher, temperature)
