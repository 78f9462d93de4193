"""Iterative structured pruning inside fairseq training (ROSITA, Liu et al. 2021, KD settings 3-4).

The schedule (``schedule``), as ROSITA's ``init_prun`` / ``pruning_schedule``:

* width mode: one attention head per layer per step, down to ``--target-heads``;
  ``n`` = (heads - target) steps, the FFN width and the embedding rank shrinking
  linearly to their targets over the same steps (step t keeps
  ``f0 - (f0 - f_target) * t / n``);
* depth mode: the top layer goes at each step (ROSITA keeps the bottom ones),
  ``n`` = (layers - target) steps.

Step k (1..n) happens after update ``k * period``, ``period = int(share * total / n)``:
every step is done within the first ``--prune-period`` share of training, and
training goes on at the final shape.  What a width step keeps is chosen by Taylor
importance accumulated since the previous step (``importance.structure_scores``
after every update: the sum of |w * g| over each head's columns of ``out_proj``
and each neuron's ``fc1`` row and ``fc2`` column); the embedding keeps its first
columns (a ``FactorizedEmbedding`` from ``distill-prune`` is in SVD order).

Unlike ROSITA, which builds a fresh optimizer after each step, the optimizer's
state follows the weights: Adam's moments are sliced with them (the kept heads'
and neurons' moments go on unchanged), a removed layer's parameters leave the
optimizer, and the learning-rate schedule runs on.  Parameters are cut in place
(``p.data = ...``), so the optimizer keeps referring to the same tensors.

The pruner is a module of the model (``model.iterative_pruning``) without
parameters; its extra state (steps done, the scores being accumulated, the log
of every step) is saved in the model's state dict, so ``--restore-file``
continues exactly, and ``pruned_roberta`` shrinks itself to a checkpoint's shapes
before loading it (``shrink_to_state``).
"""

import logging
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from ..models.pruned_roberta import FactorizedEmbedding, layer_shapes, record_shapes
from .importance import structure_scores
from .prune import top_indices

logger = logging.getLogger(__name__)

MODES = ("width", "depth")


def schedule(mode: str, shapes: dict, total_updates: int, share: float, heads: int = 0, ffn_dim: int = 0,
             embed_rank: int = 0, layers: int = 0) -> List[dict]:
    """The steps: ``[{"update": u, "heads": [...], "ffn": [...], "embed_rank": r, "layers": n}]``.

    ``shapes`` is ``layer_shapes(model)`` at the start; a target of 0 leaves that dimension alone.
    """
    if mode not in MODES:
        raise ValueError(f"--iterative-pruning {mode!r}: one of {MODES}")
    if not 0 < share <= 1:
        raise ValueError(f"--prune-period must be in (0, 1], got {share}")
    if total_updates < 1:
        raise ValueError("iterative pruning needs the run's length: --max-update or --prune-total-updates")
    h0, f0, r0, n0 = shapes["layer_heads"], shapes["layer_ffn_dims"], shapes["embed_rank"], shapes["encoder_layers"]
    if mode == "depth":
        if heads or ffn_dim or embed_rank:
            raise ValueError("depth mode removes layers only: --target-heads/--target-ffn-dim/"
                             "--target-embed-rank belong to width mode")
        if not 1 <= layers < n0:
            raise ValueError(f"depth mode needs --target-layers in 1..{n0 - 1} (the model has {n0}), got {layers}")
        n = n0 - layers
        targets = [{"heads": h0[:n0 - t], "ffn": f0[:n0 - t], "embed_rank": r0, "layers": n0 - t}
                   for t in range(1, n + 1)]
    else:
        if layers:
            raise ValueError("width mode keeps every layer: --target-layers belongs to depth mode")
        if not heads:
            raise ValueError("width mode removes one head per layer per step: give --target-heads")
        if not all(1 <= heads <= h for h in h0) or heads == max(h0):
            raise ValueError(f"--target-heads {heads}: must be at least 1 and below the model's heads {h0}")
        if ffn_dim and not all(1 <= ffn_dim <= f for f in f0):
            raise ValueError(f"--target-ffn-dim {ffn_dim}: must be in 1..{min(f0)} (the model's widths {f0})")
        if embed_rank:
            if not r0:
                raise ValueError("--target-embed-rank shrinks a factorised embedding: factorise it first "
                                 "at full rank, which is exact (distill-prune --embed-rank D)")
            if not 1 <= embed_rank <= r0:
                raise ValueError(f"--target-embed-rank {embed_rank}: must be in 1..{r0}")
        n = max(h0) - heads

        def linear(start, end, t):
            return start - (start - end) * t // n

        targets = [{"heads": [max(heads, h - t) for h in h0],
                    "ffn": [linear(f, ffn_dim, t) if ffn_dim else f for f in f0],
                    "embed_rank": linear(r0, embed_rank, t) if embed_rank else r0, "layers": n0}
                   for t in range(1, n + 1)]
    period = math.floor(share * total_updates / n + 1e-9)  # 0.3 * 100 / 3 is 9.999... in floats
    if period < 1:
        raise ValueError(f"{n} pruning steps do not fit in {share} of {total_updates} updates: "
                         f"raise --prune-period or train longer")
    return [{"update": (k + 1) * period, **t} for k, t in enumerate(targets)]


def optimizer_state(optimizer) -> dict:
    """The torch optimizer's per-parameter state under fairseq's wrapper."""
    inner = getattr(optimizer, "optimizer", optimizer)
    inner = getattr(inner, "optimizer", inner)  # fairseq's MemoryEfficientFP16Optimizer wraps once more
    return inner.state, inner


@torch.no_grad()
def _slice(p: nn.Parameter, dim: int, index: torch.Tensor, optimizer) -> None:
    """Keep ``index`` along ``dim`` of ``p``, and of every optimizer state tensor shaped like it."""
    old = p.shape
    index = index.to(p.device)
    p.data = p.data.index_select(dim, index).contiguous()
    p.grad = None
    if optimizer is not None:
        state, _ = optimizer_state(optimizer)
        for key, value in state.get(p, {}).items():
            if torch.is_tensor(value) and value.shape == old:
                state[p][key] = value.index_select(dim, index.to(value.device)).contiguous()


def _forget(params: Sequence[nn.Parameter], optimizer) -> None:
    """Take removed parameters out of the optimizer (its groups and its state)."""
    if optimizer is None:
        return
    state, inner = optimizer_state(optimizer)
    gone = {id(p) for p in params}
    for group in inner.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in gone]
    for p in params:
        state.pop(p, None)


def keep_heads_inplace(attn, heads: Sequence[int], optimizer=None) -> None:
    """Keep these heads (in this order) of a fairseq MultiheadAttention, its tensors kept."""
    hd = attn.head_dim
    rows = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in heads])
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
        _slice(proj.weight, 0, rows, optimizer)
        _slice(proj.bias, 0, rows, optimizer)
        proj.out_features = len(rows)
    _slice(attn.out_proj.weight, 1, rows, optimizer)
    attn.out_proj.in_features = len(rows)
    attn.num_heads = len(heads)
    attn.embed_dim = len(rows)  # as fairseq's _adaptive_prune_heads
    attn._set_skip_embed_dim_check()  # torch's fused kernel expects the full width


def keep_ffn_inplace(layer, neurons: Sequence[int], optimizer=None) -> None:
    index = torch.as_tensor(list(neurons), dtype=torch.long)
    _slice(layer.fc1.weight, 0, index, optimizer)
    _slice(layer.fc1.bias, 0, index, optimizer)
    _slice(layer.fc2.weight, 1, index, optimizer)
    layer.fc1.out_features = layer.fc2.in_features = len(index)


def keep_rank_inplace(embedding: FactorizedEmbedding, rank: int, optimizer=None) -> None:
    index = torch.arange(rank)
    _slice(embedding.embed.weight, 1, index, optimizer)
    _slice(embedding.proj.weight, 1, index, optimizer)
    embedding.embed.embedding_dim = embedding.proj.in_features = rank


def drop_top_layers(model, layers: int, optimizer=None) -> None:
    enc = model.encoder.sentence_encoder
    removed = [p for layer in enc.layers[layers:] for p in layer.parameters()]
    enc.layers = nn.ModuleList(list(enc.layers)[:layers])
    enc.num_layers = layers
    _forget(removed, optimizer)


class IterativePruner(nn.Module):
    """Accumulates importance after every update and prunes ``model`` at the scheduled steps."""

    def __init__(self, steps: List[dict], mode: str):
        super().__init__()
        self.steps, self.mode = steps, mode
        self.done = 0
        self.scores: Optional[List[List[torch.Tensor]]] = None
        self.log: List[dict] = []

    # -- state in the model's checkpoint
    def get_extra_state(self):
        scores = None if self.scores is None else [[s.cpu() for s in layer] for layer in self.scores]
        return {"mode": self.mode, "steps": self.steps, "done": self.done, "scores": scores, "log": self.log}

    def set_extra_state(self, state) -> None:
        if state["mode"] != self.mode or state["steps"] != self.steps:
            raise ValueError(f"the checkpoint was pruned on another schedule ({state['mode']}: "
                             f"{[s['update'] for s in state['steps']]}), this run's is ({self.mode}: "
                             f"{[s['update'] for s in self.steps]}): keep the pruning flags of the run it "
                             f"resumes, or make it a new start with distill-prune --checkpoint CKPT --output DIR")
        self.done, self.log = state["done"], list(state["log"])
        self.scores = None if state["scores"] is None else [list(layer) for layer in state["scores"]]

    def forward(self, *args, **kwargs):
        raise RuntimeError("the pruner is driven by the task's optimizer_step, not called")

    # -- driven by the task
    @property
    def finished(self) -> bool:
        return self.done >= len(self.steps)

    def expected_shapes(self, start: dict) -> dict:
        """The shapes the model has between step ``done`` and the next (``start`` before the first)."""
        if not self.done:
            return start
        last = self.steps[self.done - 1]
        return {"encoder_layers": last["layers"], "layer_heads": last["heads"], "layer_ffn_dims": last["ffn"],
                "embed_rank": last["embed_rank"]}

    @torch.no_grad()
    def accumulate(self, model) -> None:
        """After the update's gradients are complete (fp32, clipped), before the optimizer steps."""
        if self.finished or self.mode != "width":
            return
        fresh = structure_scores(model)
        if not all(torch.isfinite(h).all() and torch.isfinite(f).all() for h, f in fresh):
            raise FloatingPointError("non-finite gradients reached the pruning scores")
        if self.scores is None:
            self.scores = [[h.clone(), f.clone()] for h, f in fresh]
        else:
            for acc, (h, f) in zip(self.scores, fresh):
                acc[0] = acc[0].to(h.device) + h
                acc[1] = acc[1].to(f.device) + f

    @torch.no_grad()
    def after_update(self, model, optimizer, num_updates: int) -> Optional[dict]:
        """Prune when update ``num_updates`` ends a period; return the step's log entry."""
        if self.finished or num_updates < self.steps[self.done]["update"]:
            return None
        step = self.steps[self.done]
        enc = model.encoder.sentence_encoder
        if self.done and layer_shapes(model) != self.expected_shapes({}):
            raise ValueError(f"the model's shapes {layer_shapes(model)} are not the schedule's after step "
                             f"{self.done} ({self.expected_shapes({})})")
        entry: Dict = {"update": num_updates, "step": self.done + 1}
        if self.mode == "depth":
            drop_top_layers(model, step["layers"], optimizer)
            entry["layers"] = step["layers"]
        else:
            if self.scores is None:
                raise RuntimeError("no importance accumulated before a width pruning step")
            kept_heads, kept_ffn = [], []
            for layer, (h_scores, f_scores), h, f in zip(enc.layers, self.scores, step["heads"], step["ffn"]):
                heads = list(range(layer.self_attn.num_heads))
                if h < len(heads):
                    heads = top_indices(h_scores.tolist(), h)
                    keep_heads_inplace(layer.self_attn, heads, optimizer)
                neurons = list(range(layer.fc1.out_features))
                if f < len(neurons):
                    neurons = top_indices(f_scores.tolist(), f)
                    keep_ffn_inplace(layer, neurons, optimizer)
                kept_heads.append(heads)
                kept_ffn.append(neurons)
            emb = enc.embed_tokens
            if isinstance(emb, FactorizedEmbedding) and step["embed_rank"] < emb.rank:
                keep_rank_inplace(emb, step["embed_rank"], optimizer)
            entry.update(heads=kept_heads, ffn=[len(n) for n in kept_ffn], embed_rank=step["embed_rank"])
            self.scores = None  # importance is re-accumulated over each period
        self.done += 1
        entry["shapes"] = record_shapes(model)
        entry["parameters"] = sum(p.numel() for n, p in model.named_parameters())
        self.log.append(entry)
        logger.info("pruning step %d of %d after update %d: %s, %s parameters", entry["step"], len(self.steps),
                    num_updates, entry["shapes"], f"{entry['parameters']:,}")
        return entry


SUPPORTED_OPTIMIZERS = ("Adam", "AdamW", "SGD")  # per-parameter state shaped like the parameter


def check_optimizer(optimizer) -> None:
    """The optimizer's state must be per-parameter tensors the cuts can slice (no flat fp32 copy)."""
    if type(optimizer).__name__ in ("FP16Optimizer", "AMPOptimizer"):
        raise ValueError(f"--iterative-pruning cannot follow {type(optimizer).__name__}'s copies of the "
                         f"weights: train in fp32")
    _, inner = optimizer_state(optimizer)
    if type(inner).__name__ not in SUPPORTED_OPTIMIZERS:
        raise ValueError(f"--iterative-pruning slices the optimizer's state with the weights, which "
                         f"{type(inner).__name__}'s is not shaped for: use adam or sgd")


def attach_pruner(model, cfg) -> IterativePruner:
    """``model.iterative_pruning`` for the task flags ``cfg`` (``--iterative-pruning``, targets, period)."""
    from ..models.pruned_roberta import PrunedRobertaModel

    if not isinstance(model, PrunedRobertaModel):
        raise ValueError("--iterative-pruning needs a pruned_roberta student, whose checkpoints record its "
                         "shapes: make one with distill-prune (--output DIR, then $(cat DIR/model-args.txt))")
    # half precision keeps scaled gradients and (--fp16/--bf16) flat fp32 copies of the weights
    # that in-place cuts cannot follow; ROSITA trains in fp32 too
    half = [flag for flag, on in (("--fp16", cfg.fp16), ("--bf16", cfg.bf16), ("--amp", cfg.amp),
                                  ("--memory-efficient-fp16", cfg.memory_efficient_fp16)) if on]
    if half:
        raise ValueError(f"--iterative-pruning trains in fp32: drop {' '.join(half)}")
    if (cfg.distributed_world_size or 1) > 1 or str(cfg.ddp_backend) == "fully_sharded":
        raise ValueError("--iterative-pruning changes parameter shapes, which DDP's gradient buckets and "
                         "FSDP's flat parameters cannot follow: train on one device, without FSDP")
    if cfg.store_ema:
        raise ValueError("--iterative-pruning changes parameter shapes, which --store-ema's copy cannot "
                         "follow: drop --store-ema")
    total = cfg.prune_total_updates or cfg.max_update
    mode = str(cfg.iterative_pruning)  # a plain string in the checkpoint, not the flag's enum
    steps = schedule(mode, layer_shapes(model), total, cfg.prune_period, cfg.target_heads,
                     cfg.target_ffn_dim, cfg.target_embed_rank, cfg.target_layers)
    if cfg.max_update and steps[-1]["update"] > cfg.max_update:  # a run stopped early, to resume later?
        logger.warning("the last pruning step comes after update %d, past --max-update %d: this run ends "
                       "before the target shape", steps[-1]["update"], cfg.max_update)
    model.iterative_pruning = IterativePruner(steps, mode)
    logger.info("iterative %s pruning: %d steps, after updates %s; final shape: %s", mode,
                len(steps), [s["update"] for s in steps],
                {k: v for k, v in steps[-1].items() if k != "update"})
    return model.iterative_pruning
