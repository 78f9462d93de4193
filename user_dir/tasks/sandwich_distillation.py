"""MiniDisc's sandwich training and teacher-assistant choice (Zhang et al., 2022).

The student is a model reordered by ``distill-sparsify`` (its map in the checkpoint): every grid
sparsity is a prefix of its heads and FFN neurons, run as a weight-shared view
(``compress/sparsity.py``).  Each batch runs the teacher once (its outputs cached for the
batch), then the student at every grid sparsity at or above ``max(--trunc-sparsity,
--teacher-sparsity)``; each sparsity's loss (the criterion's: MiniDisc uses hidden-state MSE plus
prediction KD, ``layerwise_distillation``) is back-propagated divided by their number, then one
optimizer step: the mean of their losses.  Sparsities above the target train too, as in
MiniDisc's code (its first round runs 50 ... 95 for a target of 90).

Every validation measures each of those sparsities (``{metric}_s{S}``: accuracy, f1, acc_and_f1
or mcc from confusion counts over the whole split), keeps each one's best so far, and chooses
the teacher assistant (``choose_ta``)::

    argmax_s  best[s] / 100 + lam * s / 100    over teacher_sparsity < s <= target_sparsity

(the target itself when none has a score, or with ``--final-round``).  When the chosen value
improves on the best so far, the student sliced dense at that sparsity is written to ``--ta-dir``
(``model.pt`` last, ``ta.json``; its sparsity map keeps the levels at or above the chosen one),
ready to be the next round's teacher and initial student.  The bests, the choice and its value
are logged (``ta_sparsity``, ``ta_value``) and kept in the checkpoint's task state (a resumed run
reads them back from ``SAVE_DIR/checkpoint_last.pt``).  One validation subset; in distributed
training rank 0 writes the assistant.
"""

import contextlib
import copy
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics
from fairseq.tasks import register_task
from omegaconf import II

from ..compress.sparsity import MAP_KEY, FORMAT, level, view
from ..metrics import mcc_from_counts
from .glue_distillation import GlueDistillationConfig, GlueDistillationTask

logger = logging.getLogger(__name__)
COUNTS = ("ncorrect", "ngold", "ntp", "nfp", "nfn", "ntn")
TA_METRICS = ("accuracy", "f1", "acc_and_f1", "mcc")
LOSS_KEY = re.compile(r"^loss_s\d+(\.\d+)?$")
COUNT_KEY = re.compile(r"^s(\d+(?:\.\d+)?)_n\w+$")


def tag(sparsity) -> str:
    s = float(sparsity)
    return str(int(s)) if s == int(s) else str(s)


def metric_from_counts(name: str, c: Dict[str, float]) -> float:
    """accuracy, F1 (class 1 positive), their mean (MRPC's acc_and_f1) or MCC, x 100."""
    acc = 100.0 * c["ncorrect"] / c["ngold"] if c.get("ngold") else 0.0
    if name == "accuracy":
        return acc
    tp, fp, fn, tn = (c.get(k, 0.0) for k in ("ntp", "nfp", "nfn", "ntn"))
    if name == "mcc":
        return mcc_from_counts(tp, fp, fn, tn)
    f1 = 100.0 * 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return f1 if name == "f1" else (acc + f1) / 2


def choose_ta(best: Dict[float, float], teacher_sparsity: float, target: float, lam: float,
              final_round: bool = False):
    """(sparsity, value): MiniDisc's ``argmax_s best[s]/100 + lam * s/100`` over the candidates above
    the teacher's sparsity and not above the target (the first of equal values: the least sparse);
    the target (value from its score, or None) when no candidate has a score or in the final round."""
    best = {float(s): float(m) for s, m in best.items()}
    target = float(target)

    def value(s):
        return best[s] / 100.0 + lam * s / 100.0

    cands = sorted(s for s in best if float(teacher_sparsity) < s <= target)
    if final_round or not cands:
        return target, (value(target) if target in best else None)
    chosen = max(cands, key=lambda s: (value(s), -s))
    return chosen, value(chosen)


@dataclass
class SandwichDistillationConfig(GlueDistillationConfig):
    sparsity_map: str = field(
        default="", metadata={"help": "the student's sparsity map: distill-sparsify's model.pt (the map inside; "
                                      "also the template the assistant is saved from) or sparsity.json"}
    )
    trunc_sparsity: float = field(
        default=50.0, metadata={"help": "train the grid sparsities at or above this (MiniDisc: 50)"}
    )
    teacher_sparsity: float = field(
        default=0.0, metadata={"help": "the current teacher's sparsity: assistants are chosen above it, and "
                                       "only sparsities at or above it are trained"}
    )
    target_sparsity: float = field(default=90.0, metadata={"help": "the sparsity to reach (MiniDisc: 90)"})
    lam: float = field(
        default=0.2, metadata={"help": "lambda of the trade-off best/100 + lam * sparsity/100 (a float)"}
    )
    ta_metric: ChoiceEnum(list(TA_METRICS)) = field(
        default="accuracy", metadata={"help": "dev metric of the choice: accuracy, f1, acc_and_f1 (MRPC) or mcc"}
    )
    final_round: bool = field(
        default=False, metadata={"help": "the last round: the assistant is the target sparsity itself"}
    )
    ta_dir: str = field(default="", metadata={"help": "where the chosen assistant is written (default: SAVE_DIR/ta)"})
    save_dir: str = II("checkpoint.save_dir")


@register_task("sandwich_distillation", dataclass=SandwichDistillationConfig)
class SandwichDistillationTask(GlueDistillationTask):
    def __init__(self, cfg, *args, **kwargs):
        super().__init__(cfg, *args, **kwargs)
        self._map = None
        self._template = None
        self._cache_on = False
        self._cache = None
        self.ta = {"ta_best": {}, "ta_value": None, "ta_sparsity": None}  # saved in the task state

    def state_dict(self):
        return {**super().state_dict(), **self.ta}

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if isinstance(state_dict, dict) and "ta_best" in state_dict:  # a resumed run keeps its bests
            self.ta = {k: state_dict.get(k) for k in ("ta_best", "ta_value", "ta_sparsity")}

    def build_model(self, cfg, from_checkpoint=False):
        if self.cfg.iterative_pruning != "none":
            raise ValueError("sandwich training runs a fixed set of sparsities: it does not take --iterative-pruning")
        if getattr(cfg, "checkpoint_activations", False):
            # the recomputed forward would run without the views' masks
            raise ValueError("sandwich training does not take --checkpoint-activations")
        model = super().build_model(cfg, from_checkpoint)
        if not from_checkpoint:
            self._resume_ta_state()  # before this run's first save replaces checkpoint_last.pt
        return model

    # ---------------------------------------------------------------- the map
    def sparsity_levels(self):
        """The map's levels (loaded once, on first use: a student loaded for prediction needs none)."""
        if self._map is None:
            path = self.cfg.sparsity_map
            if not path:
                raise ValueError("--sparsity-map is required: the distill-sparsify model.pt the student starts from")
            if path.endswith(".json"):
                from ..compress.sparsity import read_map

                smap = read_map(path)
            else:
                from fairseq import checkpoint_utils

                self._template = checkpoint_utils.load_checkpoint_to_cpu(path)
                smap = self._template.get(MAP_KEY)
            if not isinstance(smap, dict) or smap.get("format") != FORMAT:
                raise ValueError(f"{path} holds no sparsity map: make it with distill-sparsify")
            for name in ("target_sparsity", "teacher_sparsity"):
                s = getattr(self.cfg, name)
                if name == "target_sparsity" or s:
                    level(smap, s)  # on the grid, or a clear error
            low = max(float(self.cfg.trunc_sparsity), float(self.cfg.teacher_sparsity))
            if float(self.cfg.target_sparsity) < low:
                raise ValueError(f"--target-sparsity {self.cfg.target_sparsity} is below the trained sparsities "
                                 f"(>= {low}: --trunc-sparsity, --teacher-sparsity)")
            self._map = smap
        return self._map["levels"]

    def trained_levels(self):
        low = max(float(self.cfg.trunc_sparsity), float(self.cfg.teacher_sparsity))
        levels = [lv for lv in self.sparsity_levels() if float(lv["sparsity"]) >= low]
        if not levels:
            raise ValueError(f"no grid sparsity at or above {low}: the map's grid is {self._map['grid']}")
        return levels

    # ------------------------------------------------------ the teacher, once per batch
    def teacher_outputs(self, sample, hidden: bool = False, attention: bool = False):
        key = (id(sample), hidden, attention)
        if self._cache_on and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        out = super().teacher_outputs(sample, hidden=hidden, attention=attention)
        if self._cache_on:
            self._cache = (key, out)
        return out

    @contextlib.contextmanager
    def _one_teacher_pass(self):
        self._cache_on, self._cache = True, None
        try:
            yield
        finally:
            self._cache_on, self._cache = False, None

    # --------------------------------------------------------------- train, validate
    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        model.train()
        model.set_num_updates(update_num)
        levels = self.trained_levels()
        total, out_log, sample_size = 0.0, {}, 0
        from fairseq.optim.amp_optimizer import AMPOptimizer

        amp = isinstance(optimizer, AMPOptimizer)  # as fairseq's own train_step
        with self._one_teacher_pass():
            for lv in levels:
                with view(model, lv), torch.autograd.profiler.record_function("forward"), \
                        torch.cuda.amp.autocast(enabled=amp):
                    loss, sample_size, log = criterion(model, sample)
                if ignore_grad:
                    loss = loss * 0
                with torch.autograd.profiler.record_function("backward"):
                    optimizer.backward(loss / len(levels))
                total = total + loss.detach() / len(levels)
                for k, v in log.items():  # the sparsities' mean, and each one's loss
                    if k not in ("ntokens", "nsentences", "sample_size"):
                        out_log[k] = out_log.get(k, 0) + v / len(levels)
                out_log[f"loss_s{tag(lv['sparsity'])}"] = log["loss"]
        for k in ("ntokens", "nsentences", "sample_size"):
            out_log[k] = log[k]
        return total, sample_size, out_log

    def valid_step(self, sample, model, criterion):
        model.eval()
        target = float(self.cfg.target_sparsity)
        out_log, result = {}, None
        with torch.no_grad(), self._one_teacher_pass():
            for lv in self.trained_levels():
                with view(model, lv):
                    loss, sample_size, log = criterion(model, sample)
                t = tag(lv["sparsity"])
                for k in COUNTS:
                    if k in log:
                        out_log[f"s{t}_{k}"] = log[k]
                if float(lv["sparsity"]) == target or result is None:
                    result = (loss, sample_size, log)  # the plain metrics are the target's
        loss, sample_size, log = result
        return loss, sample_size, {**log, **out_log}

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        keys = {k for log in logging_outputs for k in log}
        size = sum(log.get("sample_size", 0) for log in logging_outputs)
        for k in sorted(k for k in keys if LOSS_KEY.match(k)):  # per sentence, base 2, as "loss"
            metrics.log_scalar(k, sum(log.get(k, 0) for log in logging_outputs) / max(size, 1) / math.log(2),
                               size, round=3)
        tags = sorted({m.group(1) for k in keys if (m := COUNT_KEY.match(k))}, key=float)
        for t in tags:
            for c in COUNTS:
                if f"s{t}_{c}" in keys:
                    metrics.log_scalar_sum(f"_s{t}_{c}", sum(float(log.get(f"s{t}_{c}", 0)) for log in logging_outputs))
            metrics.log_derived(f"{self.cfg.ta_metric}_s{t}", self._derived(t))

    def _derived(self, t):
        name = str(self.cfg.ta_metric)

        def fn(meters):
            counts = {c: float(meters[f"_s{t}_{c}"].sum) for c in COUNTS if f"_s{t}_{c}" in meters}
            return round(metric_from_counts(name, counts), 2)

        return fn

    def post_validate(self, model, stats, agg):
        """After each validation: the bests, the assistant's choice, and the dense assistant saved
        when the chosen value improves."""
        name = str(self.cfg.ta_metric)
        scores = {float(k[len(name) + 2:]): float(v) for k, v in stats.items() if k.startswith(f"{name}_s")}
        if not scores:
            return
        best = {float(k): v for k, v in self.ta["ta_best"].items()}
        for s, m in scores.items():
            best[s] = max(m, best.get(s, float("-inf")))
        self.ta["ta_best"] = {tag(s): m for s, m in best.items()}
        chosen, value = choose_ta(best, self.cfg.teacher_sparsity, self.cfg.target_sparsity, self.cfg.lam,
                                  self.cfg.final_round)
        stats["ta_sparsity"], stats["ta_value"] = chosen, (round(value, 4) if value is not None else None)
        previous = self.ta["ta_value"]
        rank0 = not (torch.distributed.is_available() and torch.distributed.is_initialized()
                     and torch.distributed.get_rank() != 0)
        if value is not None and (previous is None or value > previous) and rank0:
            self.ta.update(ta_value=value, ta_sparsity=chosen)
            path = self.save_assistant(model, chosen, value, best, stats.get("num_updates"))
            logger.info("teacher assistant: sparsity %s (value %.4f) -> %s", tag(chosen), value, path)

    def _resume_ta_state(self) -> None:
        """A run resumed from SAVE_DIR/checkpoint_last.pt keeps its bests (fairseq's trainer does not hand
        the task its state back): read them there before this run's first save replaces it."""
        if getattr(self, "_resumed", False):
            return
        self._resumed = True
        path = os.path.join(self.cfg.save_dir, "checkpoint_last.pt")
        if not self.ta["ta_best"] and os.path.exists(path):
            from fairseq import checkpoint_utils

            saved = checkpoint_utils.load_checkpoint_to_cpu(path).get("task_state") or {}
            if "ta_best" in saved:
                self.ta = {k: saved.get(k) for k in ("ta_best", "ta_value", "ta_sparsity")}
                logger.info("resumed the assistant's choice from %s: bests %s", path, self.ta["ta_best"])

    def save_assistant(self, model, sparsity, value, best, num_updates) -> Optional[str]:
        from ..compress.encoder_checkpoint import model_args, save_encoder
        from ..compress.sparsity import densify

        self.sparsity_levels()
        if self._template is None:
            logger.warning("--sparsity-map is a JSON file: no checkpoint to save the assistant from (name the "
                           "distill-sparsify model.pt instead)")
            return None
        out = self.cfg.ta_dir or os.path.join(self.cfg.save_dir, "ta")
        dense = copy.deepcopy(model).cpu().eval()
        densify(dense, level(self._map, sparsity))
        smap = {**self._map, "levels": [lv for lv in self._map["levels"] if float(lv["sparsity"]) >= sparsity]}
        smap.update(grid=[lv["sparsity"] for lv in smap["levels"]], densified_at=level(self._map, sparsity)["sparsity"])
        info = {"sparsity": smap["densified_at"], "value": value, "metric": str(self.cfg.ta_metric),
                "best": {tag(s): m for s, m in sorted(best.items())}, "lam": self.cfg.lam,
                "teacher_sparsity": self.cfg.teacher_sparsity, "target_sparsity": self.cfg.target_sparsity,
                "num_updates": num_updates}
        save_encoder(dense, self._template, model_args(self._template["cfg"]), out,
                     extra_files={"ta.json": json.dumps(info, indent=1) + "\n"}, extra_keys={MAP_KEY: smap})
        return os.path.join(out, "model.pt")
