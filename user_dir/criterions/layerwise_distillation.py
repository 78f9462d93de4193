"""Layer-wise distillation of a transformer student from a teacher run inside training.

For a batch, with the teacher's outputs from ``task.teacher_outputs`` (the
online teacher of ``--teacher-checkpoint``; offline logits serve the
prediction term alone)::

    loss = alpha * P(s, t) + (1 - alpha) * CE(s, y)           (CE where gold labels exist)
         + hidden_weight    * sum_l H(proj(s_h[l]), t_h[map[l]])
         + attention_weight * sum_l A(s_a[l], t_a[map[l]])      (l >= 1: layers, not the embedding)

P is ``--prediction-loss`` (soft_ce, ROSITA's and TinyBERT's default; kl with
T^2; mse), H ``--hidden-loss`` (mse or cosine) over every position or, with
``--no-hidden-padding``, the real tokens only; A ``--attention-loss`` (mse or
kl).  Each term is the mean over what it was taken over (see
``distillation_losses``), so weights compare across batch shapes.

Hidden state 0 is the embedding output and state l the output of layer l,
for both models.  ``--layer-map`` gives, for each student state 0..L_s, the
teacher state it learns from: ``drop`` (ROSITA: drop every (L_t/L_s)-th
teacher layer, which is TinyBERT's uniform skip when L_s divides L_t),
``uniform`` (i * L_t/L_s), ``bottom`` (i -> i) or a list (``0,1,3,4,6``).
With ``--hidden-projection`` a learned linear map takes the student's width
to the teacher's (it is saved with the checkpoint).  A map that names a
missing layer, widths that differ without a projection, or head counts that
differ for the attention term are refused when training starts.  Under
iterative depth pruning the map follows the student's depth (recomputed from
the rule when a layer goes, as ROSITA does every batch).
"""

from dataclasses import dataclass, field
from typing import List

import torch.nn as nn
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import metrics

from ..models.transformer_outputs import classifier_outputs
from .distillation import confusion, reduce_prediction_metrics
from .distillation_losses import ATTENTION_LOSSES, HIDDEN_LOSSES, cross_entropy, prediction_loss, weighted

LAYER_MAP_RULES = ("drop", "uniform", "bottom")


def layer_map(rule: str, student_layers: int, teacher_layers: int) -> List[int]:
    """Teacher hidden-state index for each student state 0..student_layers (0: the embedding)."""
    Ls, Lt = student_layers, teacher_layers
    if Ls < 1 or Lt < 1:
        raise ValueError("both models need at least one layer")
    if rule not in LAYER_MAP_RULES:
        try:
            mapping = [int(x) for x in rule.replace(" ", "").split(",") if x != ""]
        except ValueError:
            raise ValueError(f"--layer-map {rule!r}: one of {LAYER_MAP_RULES} or a list of teacher "
                             f"states like 0,2,4") from None
        if len(mapping) != Ls + 1:
            raise ValueError(f"--layer-map {rule!r} has {len(mapping)} entries; the student has {Ls + 1} "
                             f"hidden states (the embedding output and {Ls} layers)")
        bad = [m for m in mapping if not 0 <= m <= Lt]
        if bad:
            raise ValueError(f"--layer-map {rule!r} names teacher states {bad}; the teacher has 0..{Lt} "
                             f"(0: the embedding output)")
        return mapping
    if rule == "bottom":
        if Ls > Lt:
            raise ValueError(f"--layer-map bottom: the student has {Ls} layers, the teacher only {Lt}")
        return list(range(Ls + 1))
    if Lt % Ls == 0:
        return [i * (Lt // Ls) for i in range(Ls + 1)]
    if rule == "uniform":
        raise ValueError(f"--layer-map uniform needs the student's layers ({Ls}) to divide the "
                         f"teacher's ({Lt}): use drop, bottom or a list")
    ratio = Lt / Ls
    kept = [i for i in range(Lt + 1) if (i + 1) % ratio > 1e-5 and ratio - (i + 1) % ratio > 1e-5]
    if len(kept) != Ls + 1 or Ls > Lt:
        raise ValueError(f"--layer-map drop cannot map {Lt} teacher layers to {Ls}: give a list")
    return kept


@dataclass
class LayerwiseDistillationConfig(FairseqDataclass):
    classification_head_name: str = field(
        default="sentence_classification_head", metadata={"help": "name of the classification head to use"}
    )
    distillation_alpha: float = field(
        default=1.0, metadata={"help": "weight of the prediction term; 1 - alpha weighs the gold-label "
                                       "cross-entropy where gold labels exist"}
    )
    distillation_temperature: float = field(default=1.0, metadata={"help": "softmax temperature T"})
    prediction_loss: ChoiceEnum(["soft_ce", "kl", "mse"]) = field(
        default="soft_ce", metadata={"help": "soft_ce: cross-entropy with the teacher's softened "
                                             "distribution (ROSITA, TinyBERT); kl: T^2 * KL; mse: logits"}
    )
    hidden_weight: float = field(default=1.0, metadata={"help": "weight of the hidden-state term (0: off)"})
    hidden_loss: ChoiceEnum(["mse", "cosine"]) = field(
        default="mse", metadata={"help": "mse per element (TinyBERT, ROSITA) or 1 - cosine per position"}
    )
    no_hidden_padding: bool = field(
        default=False, metadata={"help": "leave padding positions out of the hidden-state and attention "
                                         "terms (default: every position, as ROSITA)"}
    )
    attention_weight: float = field(default=0.0, metadata={"help": "weight of the attention-map term (0: off)"})
    attention_loss: ChoiceEnum(["mse", "kl"]) = field(
        default="mse", metadata={"help": "mse of the probabilities, or KL(teacher || student) per row"}
    )
    attention_average_heads: bool = field(
        default=False, metadata={"help": "compare head-averaged maps (needed when head counts differ)"}
    )
    layer_map: str = field(
        default="drop", metadata={"help": "teacher state of each student state 0..L (0: embedding output): "
                                          "drop (ROSITA), uniform (TinyBERT), bottom, or a list like 0,1,3,4,6"}
    )
    hidden_projection: bool = field(
        default=False, metadata={"help": "learn a linear map from the student's width to the teacher's "
                                         "(required when they differ)"}
    )


@register_criterion("layerwise_distillation", dataclass=LayerwiseDistillationConfig)
class LayerwiseDistillationCriterion(FairseqCriterion):
    def __init__(self, cfg: LayerwiseDistillationConfig, task):
        super().__init__(task)
        if not 0.0 <= cfg.distillation_alpha <= 1.0:
            raise ValueError(f"--distillation-alpha must be in [0, 1], got {cfg.distillation_alpha}")
        if cfg.distillation_temperature <= 0:
            raise ValueError(f"--distillation-temperature must be positive, got {cfg.distillation_temperature}")
        if cfg.hidden_weight < 0 or cfg.attention_weight < 0:
            raise ValueError("--hidden-weight and --attention-weight must be >= 0")
        self.cfg = cfg
        self.head = cfg.classification_head_name
        self.mapping = None
        self.projection = None
        if cfg.hidden_weight > 0 or cfg.attention_weight > 0:
            self._check_layers(task)

    def load_state_dict(self, state_dict, strict=True):
        # a checkpoint without criterion state (a pruned model, a student trained without a
        # projection): the projection starts fresh; fairseq's resume gives it back strictly
        if not state_dict:
            return
        return super().load_state_dict(state_dict, strict=strict)

    def _check_layers(self, task) -> None:
        teacher = task.load_teacher() if hasattr(task, "load_teacher") else getattr(task, "online_teacher", None)
        student = getattr(task, "student_shape", None)
        if teacher is None:
            raise ValueError("--hidden-weight/--attention-weight need the teacher's hidden states: pass "
                             "--teacher-checkpoint to the task (or set both weights to 0)")
        if student is None:
            raise ValueError("layer-wise distillation needs a transformer student (hf_bert, pruned_roberta)")
        t = teacher.shape
        self.teacher_layers = t["layers"]
        pruning = getattr(getattr(task, "cfg", None), "iterative_pruning", "none")
        if pruning == "depth":
            if self.cfg.layer_map not in LAYER_MAP_RULES:
                raise ValueError("--iterative-pruning depth removes student layers while training: give "
                                 "--layer-map as a rule (drop, uniform, bottom), not a list")
            for depth in range(task.cfg.target_layers or student["layers"], student["layers"]):
                try:
                    layer_map(self.cfg.layer_map, depth, t["layers"])
                except ValueError as e:
                    raise ValueError(f"--iterative-pruning depth passes through {depth} layers, where {e}: "
                                     f"use --layer-map bottom, or a rule every depth allows") from None
        self.mapping = layer_map(self.cfg.layer_map, student["layers"], t["layers"])
        if student["dim"] != t["dim"]:
            if not self.cfg.hidden_projection:
                raise ValueError(f"the student's width is {student['dim']} and the teacher's {t['dim']}: "
                                 f"pass --hidden-projection to learn a map between them")
            self.projection = nn.Linear(student["dim"], t["dim"])
        if self.cfg.attention_weight > 0:
            if pruning == "width" and not self.cfg.attention_average_heads:
                raise ValueError("--iterative-pruning width removes heads while training: pass "
                                 "--attention-average-heads to compare averaged maps")
            for si, ti in enumerate(self.mapping[1:], start=1):
                if ti == 0:
                    raise ValueError(f"--layer-map maps student layer {si} to the teacher's embedding "
                                     f"output, which has no attention map")
                sh, th = student["heads"][si - 1], t["heads"][ti - 1]
                if sh != th and not self.cfg.attention_average_heads:
                    raise ValueError(f"student layer {si} has {sh} attention heads, teacher layer {ti} has "
                                     f"{th}: pass --attention-average-heads to compare averaged maps")

    def forward(self, model, sample, reduce=True):
        cfg = self.cfg
        hidden, attention = cfg.hidden_weight > 0, cfg.attention_weight > 0
        tokens = sample["net_input"]["src_tokens"]
        if self.mapping is not None:  # iterative depth pruning removes student layers as it trains
            layers = len(model.encoder.sentence_encoder.layers)
            if len(self.mapping) != layers + 1:
                self.mapping = layer_map(cfg.layer_map, layers, self.teacher_layers)
        s = classifier_outputs(model, tokens, self.head, hidden=hidden, attention=attention)
        t = self.task.teacher_outputs(sample, hidden=hidden, attention=attention)
        logits = s.logits.float()
        B = logits.size(0)
        preds = logits.argmax(dim=-1)
        terms, weights = [], []
        log = {"ntokens": sample["ntokens"], "nsentences": B, "sample_size": B}
        target = sample.get("target")
        if t is not None:
            kd = prediction_loss(cfg.prediction_loss, logits, t.logits, cfg.distillation_temperature)
            terms.append(kd)
            weights.append(cfg.distillation_alpha)
            log.update(kd_loss=kd.sum.data, nkd=B, nagree=(preds == t.logits.argmax(-1)).sum())
        if target is not None:
            ce = cross_entropy(logits, target)
            terms.append(ce)
            weights.append(1.0 - cfg.distillation_alpha if t is not None else 1.0)
            log.update(ce_loss=ce.sum.data, ngold=B, ncorrect=(preds == target.view(-1)).sum(),
                       **confusion(preds, target, logits.size(-1)))
        mask = s.padding_mask if cfg.no_hidden_padding else None
        if hidden:
            fn = HIDDEN_LOSSES[cfg.hidden_loss]
            layer_terms = []
            for si, ti in enumerate(self.mapping):
                h = s.hidden_states[si]
                layer_terms.append(fn(self.projection(h) if self.projection is not None else h,
                                      t.hidden_states[ti], mask))
            terms += layer_terms
            weights += [cfg.hidden_weight] * len(layer_terms)
            log["hidden_loss"] = sum(x.mean for x in layer_terms).data * B
        if attention:
            fn = ATTENTION_LOSSES[cfg.attention_loss]
            layer_terms = []
            for si, ti in enumerate(self.mapping[1:], start=1):
                sa, ta = s.attentions[si - 1], t.attentions[ti - 1]
                if cfg.attention_average_heads:
                    sa, ta = sa.mean(1, keepdim=True), ta.mean(1, keepdim=True)
                layer_terms.append(fn(sa, ta, mask))
            terms += layer_terms
            weights += [cfg.attention_weight] * len(layer_terms)
            log["attn_loss"] = sum(x.mean for x in layer_terms).data * B
        if not terms:
            raise ValueError("this batch has neither teacher outputs nor gold labels")
        loss = weighted(terms, weights, B)
        log["loss"] = loss.data
        return loss, B, log

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        reduce_prediction_metrics(logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        for part in ("hidden_loss", "attn_loss"):  # means per sentence of the layers' summed terms
            if any(part in log for log in logging_outputs):
                value = sum(log.get(part, 0) for log in logging_outputs)
                metrics.log_scalar(part, value / max(sample_size, 1), sample_size, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True

