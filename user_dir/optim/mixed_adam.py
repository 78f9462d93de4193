"""``mixed_adam``: SparseAdam for sparse embeddings, AdamW for everything else.

Routing: a parameter marked ``param.param_group = "sparse"`` (the DAN's
embedding table when its gradients are sparse) goes to
``torch.optim.SparseAdam``, which updates only the rows present in the
batch, moments included ("lazy" Adam).  All other parameters go to
``torch.optim.AdamW``.

Rules:

* learning rate: one value, set by the fairseq lr scheduler on every group
  of both parts;
* weight decay (``--weight-decay``): decoupled (AdamW) on the dense
  parameters only; the sparse table gets none, since decaying every row
  each step would touch the whole table and defeat the sparse update;
* gradient clipping (``--clip-norm``): by the global L2 norm over all
  gradients, sparse ones included (coalesced first, so a feature that occurs
  twice in a batch counts once with its summed gradient);
* checkpoints: the state of both parts is saved, so ``--restore-file``
  resumes exactly;
* no ``--fp16``/``--bf16``: the sparse table and its moments stay float32.
"""

import ast
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import List

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.optim import FairseqOptimizer, register_optimizer
from omegaconf import II

logger = logging.getLogger(__name__)


@dataclass
class MixedAdamConfig(FairseqDataclass):
    adam_betas: str = field(default="(0.9, 0.999)", metadata={"help": "betas for both Adam parts"})
    adam_eps: float = field(default=1e-8, metadata={"help": "epsilon for both Adam parts"})
    weight_decay: float = field(
        default=0.0, metadata={"help": "decoupled weight decay, dense parameters only"}
    )
    lr: List[float] = II("optimization.lr")


def is_sparse_param(p: torch.nn.Parameter) -> bool:
    return getattr(p, "param_group", "default") == "sparse"


class MixedAdam(torch.optim.Optimizer):
    """Routes parameters to AdamW (dense) and SparseAdam (sparse).

    The two parts own groups and state; ``param_groups`` and ``state`` are live
    views of theirs (a part's ``load_state_dict`` replaces its group dicts), so
    an lr the scheduler sets always reaches both.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        params = list(params)
        if params and isinstance(params[0], dict):
            params = [p for group in params for p in group["params"]]
        # torch's own set-up first (hooks, profiling names); the parts do not exist yet, so
        # its groups go nowhere (see param_groups)
        super().__init__([{"params": params}], dict(lr=lr, betas=betas, eps=eps))
        dense = [p for p in params if not is_sparse_param(p)]
        sparse = [p for p in params if is_sparse_param(p)]
        self.dense = torch.optim.AdamW(dense, lr=lr, betas=betas, eps=eps,
                                       weight_decay=weight_decay) if dense else None
        self.sparse = torch.optim.SparseAdam(sparse, lr=lr, betas=betas, eps=eps) if sparse else None

    @property
    def parts(self):
        return [(name, opt) for name in ("dense", "sparse") if (opt := self.__dict__.get(name)) is not None]

    @property
    def param_groups(self):
        return [g for _, opt in self.parts for g in opt.param_groups]

    @param_groups.setter
    def param_groups(self, value):
        pass  # Optimizer.__init__ assigns a list of its own; the parts keep the real groups

    @property
    def state(self):
        merged = {}
        for _, opt in self.parts:
            merged.update(opt.state)
        return merged

    @state.setter
    def state(self, value):
        pass  # likewise for the state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for _, opt in self.parts:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True):
        for _, opt in self.parts:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {name: opt.state_dict() for name, opt in self.parts}

    def load_state_dict(self, state_dict):
        names = {name for name, _ in self.parts}
        if set(state_dict) != names:
            raise ValueError(f"mixed_adam state has parts {sorted(state_dict)} but this model needs "
                             f"{sorted(names)}: was it saved by another optimizer or model?")
        for name, opt in self.parts:
            opt.load_state_dict(state_dict[name])

    def __repr__(self):
        return f"MixedAdam(dense={self.dense!r}, sparse={self.sparse!r})"


@register_optimizer("mixed_adam", dataclass=MixedAdamConfig)
class FairseqMixedAdam(FairseqOptimizer):
    """fairseq wrapper of :class:`MixedAdam` (see the module docstring for the rules)."""

    def __init__(self, cfg: MixedAdamConfig, params):
        super().__init__(cfg)
        self._optimizer = MixedAdam(params, **self.optimizer_config)
        n_sparse = sum(p.numel() for p in params if is_sparse_param(p))
        logger.info("mixed_adam: %d sparse and %d dense parameters", n_sparse,
                    sum(p.numel() for p in params) - n_sparse)

    @property
    def optimizer_config(self):
        lr = self.cfg.lr[0] if isinstance(self.cfg.lr, Collection) else self.cfg.lr
        betas = self.cfg.adam_betas
        betas = tuple(ast.literal_eval(betas)) if isinstance(betas, str) else tuple(betas)
        return {"lr": lr, "betas": betas, "eps": self.cfg.adam_eps, "weight_decay": self.cfg.weight_decay}

    def multiply_grads(self, c):
        # fairseq's version scales p.grad.data, a detached copy for sparse gradients: the
        # sparse table's gradient would keep its scale
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(c.to(p.grad.device) if torch.is_tensor(c) else c)

    def clip_grad_norm(self, max_norm, aggregate_norm_fn=None):
        norms = []
        for p in self.params:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                p.grad = p.grad.coalesce()
                norms.append(torch.linalg.vector_norm(p.grad._values(), dtype=torch.float32))
            else:
                norms.append(torch.linalg.vector_norm(p.grad, dtype=torch.float32))
        if not norms:
            return torch.tensor(0.0)
        total = torch.linalg.vector_norm(torch.stack(norms))
        if aggregate_norm_fn is not None:
            total = aggregate_norm_fn(total)
        if max_norm > 0:
            coef = (float(max_norm) / (total + 1e-6)).clamp_(max=1.0)
            self.multiply_grads(coef)
        return total

    @property
    def supports_memory_efficient_fp16(self):
        return False

    @property
    def supports_flat_params(self):
        return False
