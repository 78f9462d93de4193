"""What every student classifier of the plugin shares.

An encoder turns one text (right-padded ids [B, T]) into a vector [B, D];
a single-text model classifies that vector, a pair model classifies
``[u, v, u * v, |u - v|]`` of its two texts (one shared encoder).  Heads are
registered by name, as in fairseq's RoBERTa, so the ``distillation`` and
``sentence_prediction`` criteria drive every student the same way.  Loading
a checkpoint with another dictionary or class count is refused clearly.
"""

import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
from fairseq import utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqEncoderModel
from omegaconf import II

# optimizers that accept sparse gradients
SPARSE_OPTIMIZERS = ("mixed_adam", "sgd")
SPARSE_CHOICES = ChoiceEnum(["auto", "yes", "no"])
SPARSE_HELP = ("sparse gradients for the embedding table; auto: yes with --optimizer mixed_adam or sgd, "
               "no otherwise and in distributed runs; refused with --fp16/--bf16")


@dataclass
class SparseTableConfig(FairseqDataclass):
    """What a student with an embedding table needs to choose sparse or dense gradients."""

    sparse_embedding: SPARSE_CHOICES = field(default="auto", metadata={"help": SPARSE_HELP})
    optimizer_name: Optional[str] = II("optimizer._name")
    fp16: bool = II("common.fp16")
    bf16: bool = II("common.bf16")
    memory_efficient_fp16: bool = II("common.memory_efficient_fp16")
    distributed_world_size: int = II("distributed_training.distributed_world_size")


def use_sparse_embedding(cfg) -> bool:
    """``--sparse-embedding``: auto means whatever the optimizer and the run allow.

    Two setups cannot carry sparse gradients, and fail deep inside fairseq if
    they meet one: half precision (fairseq's fp16 optimizers flatten or copy
    every gradient as dense) and distributed training (NCCL has no sparse
    all-reduce; fairseq's legacy DDP views every gradient as dense).  ``auto``
    then means a dense table; ``yes`` is refused, naming the flag.
    """
    # --memory-efficient-fp16 sets fp16 too: named first. A config built outside fairseq-train holds "${common.fp16}"-style strings here: not set
    world = cfg.distributed_world_size if isinstance(getattr(cfg, "distributed_world_size", None), int) else 1
    half = [flag for flag, name in (("--memory-efficient-fp16", "memory_efficient_fp16"),
                                    ("--fp16", "fp16"), ("--bf16", "bf16"))
            if getattr(cfg, name, False) is True]
    if cfg.sparse_embedding == "no":
        return False
    if cfg.sparse_embedding == "yes" or cfg.optimizer_name in SPARSE_OPTIMIZERS:
        if half:
            raise ValueError(
                f"{half[0]} cannot train a sparse embedding table (fairseq's half-precision optimizers "
                f"treat every gradient as dense): drop {half[0]} to train in fp32, or pass "
                f"--sparse-embedding no with a dense optimizer (e.g. --optimizer adam)")
        if world > 1:
            if cfg.sparse_embedding == "yes":
                raise ValueError(
                    f"--sparse-embedding yes with --distributed-world-size {world}: distributed training "
                    f"all-reduces dense gradients only; use --sparse-embedding auto or no (a dense table)")
            _log_once(f"--distributed-world-size {world}: the embedding table gets dense gradients "
                      f"(no sparse all-reduce)")
            return False
        return True
    return False


_logged = set()


def _log_once(message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        logging.getLogger(__name__).info(message)


def mark_sparse(embedding: nn.Embedding, sparse: bool) -> None:
    """mixed_adam sends parameters marked "sparse" to SparseAdam (lazy rows)."""
    embedding.sparse = sparse
    embedding.weight.param_group = "sparse" if sparse else "default"


class ClassificationHead(nn.Module):
    """dropout -> dense -> activation -> dropout -> out_proj (RoBERTa's head layout).

    With ``num_layers`` > 1, further dense -> activation -> dropout layers
    follow the first: the "deep" of a deep averaging network (Iyyer et al.
    2015), where depth lets the head compose features that the average mixed.
    """

    def __init__(self, input_dim, inner_dim, num_classes, activation_fn, pooler_dropout, num_layers=1):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"a classification head needs at least 1 hidden layer (--head-layers), "
                             f"got {num_layers}")
        self.dense = nn.Linear(input_dim, inner_dim)
        # absent for one layer, so one-layer checkpoints keep RoBERTa's parameter names
        self.extra_layers = nn.ModuleList(nn.Linear(inner_dim, inner_dim) for _ in range(num_layers - 1))
        self.activation_fn = utils.get_activation_fn(activation_fn)
        self.dropout = nn.Dropout(p=pooler_dropout)
        self.out_proj = nn.Linear(inner_dim, num_classes)

    def forward(self, features, **kwargs):
        x = self.dropout(features)
        x = self.dropout(self.activation_fn(self.dense(x)))
        for layer in self.extra_layers:
            x = self.dropout(self.activation_fn(layer(x)))
        return self.out_proj(x)


class PooledClassifierModel(FairseqEncoderModel):
    """An encoder to one vector per text, and named classification heads.

    Subclasses set ``num_inputs`` (1 or 2), ``pair_arch`` / ``single_arch``
    (named in the error when the task gives the other kind), ``encoder_dim``
    and ``head_activation``; the config gives ``hidden_dim`` and
    ``pooler_dropout``.
    """

    num_inputs = 1
    single_arch = pair_arch = ""
    head_activation = "tanh"

    def __init__(self, cfg, encoder):
        super().__init__(encoder)
        self.cfg = cfg
        self.classification_heads = nn.ModuleDict()

    @classmethod
    def check_inputs(cls, task) -> None:
        n_task = len(getattr(task, "input_keys", ("input0",)))
        if n_task != cls.num_inputs:
            other = cls.pair_arch if n_task == 2 else cls.single_arch
            raise ValueError(f"--arch {cls.__name__} takes {cls.num_inputs} input(s) per example but "
                             f"the task gives {n_task}: use a {other} architecture")

    @property
    def encoder_dim(self) -> int:
        raise NotImplementedError

    def encode(self, src_tokens, src_lengths=None, src_tokens1=None, src_lengths1=None, **kwargs):
        u = self.encoder(src_tokens, src_lengths)
        if self.num_inputs == 1:
            return u
        if src_tokens1 is None:
            raise ValueError(f"{type(self).__name__} needs src_tokens1 (the second text of each pair)")
        v = self.encoder(src_tokens1, src_lengths1)
        return torch.cat([u, v, u * v, (u - v).abs()], dim=-1)

    def forward(self, src_tokens, src_lengths=None, features_only=False, return_all_hiddens=False,
                classification_head_name=None, **kwargs):
        x = self.encode(src_tokens, src_lengths, **kwargs)
        if classification_head_name is not None:
            x = self.classification_heads[classification_head_name](x)
        return x, {}

    @property
    def head_input_dim(self):
        return self.encoder_dim * (1 if self.num_inputs == 1 else 4)

    def register_classification_head(self, name, num_classes=None, inner_dim=None, **kwargs):
        self.classification_heads[name] = ClassificationHead(
            self.head_input_dim, inner_dim or self.cfg.hidden_dim, num_classes,
            self.head_activation, self.cfg.pooler_dropout, getattr(self.cfg, "head_layers", 1),
        )

    def upgrade_state_dict_named(self, state_dict, name):
        super().upgrade_state_dict_named(state_dict, name)
        prefix = name + "." if name else ""
        key = prefix + "encoder.embed_tokens.weight"
        if key in state_dict:
            saved, current = state_dict[key].size(0), len(self.encoder.dictionary)
            if saved != current:
                raise ValueError(
                    f"the checkpoint's embedding has {saved} rows but the input dictionary "
                    f"(input0/dict.txt) has {current} entries: load the checkpoint "
                    f"with the data-bin it was trained on"
                )
        for head_name, head in self.classification_heads.items():
            key = f"{prefix}classification_heads.{head_name}.out_proj.weight"
            if key in state_dict and state_dict[key].size(0) != head.out_proj.out_features:
                raise ValueError(
                    f"the checkpoint's head {head_name!r} has {state_dict[key].size(0)} classes "
                    f"but the task has {head.out_proj.out_features}"
                )

    @classmethod
    def from_pretrained(cls, model_name_or_path, checkpoint_file="checkpoint_best.pt",
                        data_name_or_path=".", **kwargs):
        """Load a trained student for raw-text prediction (see hub_interface)."""
        from ..inference.hub_interface import StudentHubInterface

        return StudentHubInterface.from_pretrained(model_name_or_path, checkpoint_file,
                                                   data_name_or_path, **kwargs)


def register_pair_model(single, name: str, class_name: str, doc: str):
    """Register the pair version of a single-text student: the same config, one encoder for both
    texts, ``num_inputs = 2`` (head over ``[u, v, u * v, |u - v|]``)."""
    from fairseq.models import MODEL_DATACLASS_REGISTRY, register_model

    pair = type(class_name, (single,), {"num_inputs": 2, "__doc__": doc, "__module__": single.__module__})
    return register_model(name, dataclass=MODEL_DATACLASS_REGISTRY[single.single_arch])(pair)


def register_pair_arch(model_name: str, arch_name: str, single_arch, **defaults):
    """A pair model's architecture: ``single_arch``'s sizes, then ``defaults`` where unset."""
    from fairseq.models import register_model_architecture

    def arch(args):
        single_arch(args)
        for key, value in defaults.items():
            setattr(args, key, getattr(args, key, value))

    arch.__name__ = arch_name
    return register_model_architecture(model_name, arch_name)(arch)
