"""Deep averaging network (DAN) over sparse n-gram features (Ye et al., NAACL 2022).

An input is a bag of feature ids.  The encoder looks up one embedding per
feature, pools them (``mean``, ``max``, ``sum`` or additive attention;
padding never takes part) and a RoBERTa-style head maps the pooled vector to
class logits: dropout -> dense -> activation -> dropout -> out_proj.

The embedding table is the large part (up to millions of rows).  Its
gradient is sparse when the optimizer is ``mixed_adam`` (or ``sgd``), so a
step touches only the rows of the batch's features.
"""

import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq.dataclass import ChoiceEnum
from fairseq.models import FairseqEncoder, register_model, register_model_architecture
from omegaconf import II

from ..preprocess.ngrams import JOINER
from .classifier import (
    PooledClassifierModel,
    SparseTableConfig,
    mark_sparse,
    register_pair_arch,
    register_pair_model,
    use_sparse_embedding,
)
from .teacher_embeddings import init_ngrams

logger = logging.getLogger(__name__)

POOLING_CHOICES = ChoiceEnum(["mean", "max", "sum", "attn"])
ACTIVATION_CHOICES = ChoiceEnum(["tanh", "relu"])


@dataclass
class FeatureBasedLinearModelConfig(SparseTableConfig):
    encoder_embed_dim: int = field(default=64, metadata={"help": "feature embedding dimension"})
    hidden_dim: int = field(default=64, metadata={"help": "inner dimension of the classification head"})
    head_layers: int = field(
        default=1, metadata={"help": "hidden layers of the classification head (Iyyer et al.'s DAN: 3)"}
    )
    embed_bag_mode: POOLING_CHOICES = field(
        default="mean", metadata={"help": "pooling of the feature embeddings (padding is ignored)"}
    )
    attn_dim: int = field(default=64, metadata={"help": "hidden size of the attention scorer (attn pooling)"})
    pooler_dropout: float = field(default=0.1, metadata={"help": "dropout in the classification head"})
    pooler_activation_fn: ACTIVATION_CHOICES = field(
        default="tanh", metadata={"help": "activation of the classification head"}
    )
    embed_init: str = field(
        default="", metadata={"help": "a fairseq checkpoint (the teacher) whose input embeddings start "
                                      "the n-gram table: each n-gram at the mean of its WordPiece "
                                      "tokens' embeddings (needs --encoder-embed-dim = the teacher's)"}
    )
    max_positions: int = II("task.max_positions")


class AttentivePooling(nn.Module):
    """Additive attention over the features of a bag, padding masked out."""

    def __init__(self, embed_dim: int, attn_dim: int):
        super().__init__()
        self.proj = nn.Linear(embed_dim, attn_dim)
        self.score = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, x, pad_mask):
        scores = self.score(torch.tanh(self.proj(x))).squeeze(-1)
        scores = scores.masked_fill(pad_mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        weights = torch.nan_to_num(weights, nan=0.0)  # empty bags: all -inf
        return torch.bmm(weights.unsqueeze(1), x).squeeze(1)


class DANEncoder(FairseqEncoder):
    """Feature ids [B, T] (right-padded) -> pooled embedding [B, D]."""

    def __init__(self, cfg, dictionary, sparse: bool):
        super().__init__(dictionary)
        self.cfg = cfg
        self.padding_idx = dictionary.pad()
        self.mode = cfg.embed_bag_mode
        self.sparse = sparse
        self.embed_tokens = nn.Embedding(len(dictionary), cfg.encoder_embed_dim,
                                         padding_idx=self.padding_idx, sparse=sparse)
        nn.init.normal_(self.embed_tokens.weight, mean=0.0, std=cfg.encoder_embed_dim ** -0.5)
        with torch.no_grad():
            self.embed_tokens.weight[self.padding_idx].zero_()
        mark_sparse(self.embed_tokens, sparse)
        self.attn = AttentivePooling(cfg.encoder_embed_dim, cfg.attn_dim) if self.mode == "attn" else None

    def forward(self, src_tokens, src_lengths=None, **unused):
        weight = self.embed_tokens.weight
        if self.mode in ("mean", "sum"):
            # embedding_bag skips padding_idx: an empty bag pools to zeros
            return F.embedding_bag(src_tokens, weight, mode=self.mode, sparse=self.sparse,
                                   padding_idx=self.padding_idx)
        pad_mask = src_tokens.eq(self.padding_idx)
        x = F.embedding(src_tokens, weight, padding_idx=self.padding_idx, sparse=self.sparse)
        if self.mode == "max":
            x = x.masked_fill(pad_mask.unsqueeze(-1), float("-inf")).max(dim=1).values
            return x.masked_fill(pad_mask.all(dim=1, keepdim=True), 0.0)
        return self.attn(x, pad_mask)

    def pool_flat(self, ids, counts):
        """Pooled bags from all bags' ids back to back (no padding); mean and sum only.

        The fast inference path: ``embedding_bag`` with offsets skips padding
        and collation altogether.  Empty bags pool to zeros, as in ``forward``.
        """
        if self.mode not in ("mean", "sum"):
            raise ValueError(f"flat pooling supports mean and sum, not {self.mode}")
        offsets = torch.cumsum(counts, 0) - counts
        return F.embedding_bag(ids, self.embed_tokens.weight, offsets, mode=self.mode)

    def max_positions(self):
        return self.cfg.max_positions


class _AddBias(nn.Module):
    """A dense layer whose weight was folded into the embedding table: only its bias is left."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x):
        return x + self.bias


@register_model("feature_based_linear_model", dataclass=FeatureBasedLinearModelConfig)
class FeatureBasedLinearModel(PooledClassifierModel):
    """The sparse-distillation DAN for single texts."""

    num_inputs = 1
    single_arch, pair_arch = "feature_based_linear_model", "feature_based_linear_biencoder_model"
    folded_head: Optional[str] = None

    @torch.no_grad()
    def fold_first_layer(self, head_name: str, chunk_rows: int = 65536) -> bool:
        """For inference: fold the head's first dense layer into the n-gram table.

        Mean and sum pooling are linear, so ``dense(pool(E[ids])) =
        pool((E W^T)[ids]) + b``: with ``E W^T`` as the table, the lookup gives
        the first layer's output and each text needs one matrix product less.
        The table is rewritten chunk by chunk, in place when the head is as
        wide as the table, so no second table is held.  Returns False and
        changes nothing where the identity fails or does not pay: max or
        attention pooling, pairs, more than one head, a head wider than the
        table.  A folded model refuses to train.
        """
        dense = self.classification_heads[head_name].dense
        if (self.folded_head is not None or self.num_inputs != 1 or self.encoder.mode not in ("mean", "sum")
                or len(self.classification_heads) != 1 or dense.out_features > dense.in_features):
            return False
        table = self.encoder.embed_tokens.weight
        w = dense.weight.to(table.dtype).t()
        out = table.data if dense.out_features == dense.in_features else \
            table.new_empty(table.size(0), dense.out_features)
        for start in range(0, table.size(0), chunk_rows):
            out[start:start + chunk_rows] = table.data[start:start + chunk_rows] @ w
        if out is not table.data:
            self.encoder.embed_tokens.weight = nn.Parameter(out, requires_grad=False)
            self.encoder.embed_tokens.embedding_dim = out.size(1)
        self.encoder.embed_tokens.weight.requires_grad_(False)
        self.classification_heads[head_name].dense = _AddBias(dense.bias)
        self.folded_head = head_name
        return True

    def train(self, mode: bool = True):
        if mode and self.folded_head is not None:
            raise RuntimeError("this DAN's first head layer is folded into its n-gram table "
                               "(fold_first_layer): it is for inference only; reload the checkpoint to train")
        return super().train(mode)

    @classmethod
    def build_model(cls, cfg, task):
        cls.check_inputs(task)
        sparse = use_sparse_embedding(cfg)
        logger.info("feature embedding: %d x %d, sparse gradients: %s",
                    len(task.source_dictionary), cfg.encoder_embed_dim, sparse)
        encoder = DANEncoder(cfg, task.source_dictionary, sparse)
        if cfg.embed_init:
            init_ngrams(encoder.embed_tokens, task.source_dictionary, cfg.embed_init, JOINER)
        return cls(cfg, encoder)

    @property
    def encoder_dim(self) -> int:
        return self.cfg.encoder_embed_dim

    @property
    def head_activation(self) -> str:
        return self.cfg.pooler_activation_fn


@register_model_architecture("feature_based_linear_model", "dan_paper")
def dan_paper(args):
    """The paper's DAN: 1000-dimensional embeddings and head, mean pooling."""
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 1000)
    args.hidden_dim = getattr(args, "hidden_dim", args.encoder_embed_dim)
    args.embed_bag_mode = getattr(args, "embed_bag_mode", "mean")
    args.pooler_dropout = getattr(args, "pooler_dropout", 0.1)


FeatureBasedLinearBiencoderModel = register_pair_model(
    FeatureBasedLinearModel, "feature_based_linear_biencoder_model", "FeatureBasedLinearBiencoderModel",
    "The DAN for text pairs: one shared encoder, head over [u, v, u*v, |u-v|].")
register_pair_arch("feature_based_linear_biencoder_model", "dan_paper_biencoder", dan_paper)
