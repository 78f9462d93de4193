"""Knowledge-distillation loss for classifiers.

For a batch with teacher logits t, student logits s and (where the split has
them) gold labels y::

    loss = alpha * KD(s, t) + (1 - alpha) * CE(s, y)

    KD = T^2 * KL(softmax(t / T) || softmax(s / T))     (--distillation-loss kl)
    KD = || s - t ||^2, summed over classes              (--distillation-loss mse, D-BERT)

Both parts are summed over examples; fairseq divides by the number of
sentences.  A split without teacher logits trains or evaluates on CE alone;
one without gold labels on KD alone (its weight is still alpha).  Logged:
``kd_loss`` and ``ce_loss`` (per sentence, base 2 like ``loss``),
``accuracy`` against gold where gold is real, ``mcc`` (Matthews correlation x
100, CoLA's metric) too for two classes, and ``agreement``, the share of
predictions equal to the teacher's argmax.
"""

import math
from dataclasses import dataclass, field

from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import metrics

from ..metrics import mcc_from_counts
from .distillation_losses import cross_entropy, prediction_loss

CONFUSION = ("ntp", "nfp", "nfn", "ntn")


@dataclass
class DistillationConfig(FairseqDataclass):
    classification_head_name: str = field(
        default="sentence_classification_head", metadata={"help": "name of the classification head to use"}
    )
    distillation_alpha: float = field(
        default=1.0, metadata={"help": "weight of the distillation term; 1 - alpha weighs the gold-label "
                                       "cross-entropy (default 1.0: pure distillation, as the paper)"}
    )
    distillation_temperature: float = field(
        default=1.0, metadata={"help": "softmax temperature T of the KL term (scaled by T^2)"}
    )
    distillation_loss: ChoiceEnum(["kl", "mse"]) = field(
        default="kl", metadata={"help": "kl: KL divergence of softened distributions; mse: squared "
                                        "error of the logits (D-BERT)"}
    )


@register_criterion("distillation", dataclass=DistillationConfig)
class DistillationCriterion(FairseqCriterion):
    def __init__(self, cfg: DistillationConfig, task):
        super().__init__(task)
        if not 0.0 <= cfg.distillation_alpha <= 1.0:
            raise ValueError(f"--distillation-alpha must be in [0, 1], got {cfg.distillation_alpha}")
        if cfg.distillation_temperature <= 0:
            raise ValueError(f"--distillation-temperature must be positive, got {cfg.distillation_temperature}")
        self.classification_head_name = cfg.classification_head_name
        self.alpha = cfg.distillation_alpha
        self.temperature = cfg.distillation_temperature
        self.kind = cfg.distillation_loss

    def forward(self, model, sample, reduce=True):
        logits, _ = model(**sample["net_input"], features_only=True,
                          classification_head_name=self.classification_head_name)
        logits = logits.float()
        sample_size = logits.size(0)
        preds = logits.argmax(dim=-1)
        loss = logits.new_zeros(())
        log = {"ntokens": sample["ntokens"], "nsentences": sample_size, "sample_size": sample_size}

        teacher = self.task.teacher_logits(sample) if hasattr(self.task, "teacher_logits") \
            else sample.get("distill_target")
        target = sample.get("target")
        ce_weight = 1.0 - self.alpha if teacher is not None else 1.0
        if teacher is not None:  # both terms are sums over the batch's examples
            kd = prediction_loss(self.kind, logits, teacher, self.temperature).sum
            loss = loss + self.alpha * kd
            log["kd_loss"] = kd.data
            log["nkd"] = sample_size
            log["nagree"] = (preds == teacher.argmax(dim=-1)).sum()
        if target is not None:
            ce = cross_entropy(logits, target).sum
            if ce_weight > 0:
                loss = loss + ce_weight * ce
            log["ce_loss"] = ce.data
            log["ngold"] = sample_size
            log["ncorrect"] = (preds == target.view(-1)).sum()
            log.update(confusion(preds, target, logits.size(-1)))
        log["loss"] = loss.data
        return loss, sample_size, log

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        reduce_prediction_metrics(logging_outputs)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def confusion(preds, target, num_classes: int) -> dict:
    """The binary confusion counts (class 1 positive) a validation's MCC is derived from; {} otherwise."""
    if num_classes != 2:
        return {}
    p, g = preds.eq(1), target.view(-1).eq(1)
    return {"ntp": (p & g).sum(), "nfp": (p & ~g).sum(), "nfn": (~p & g).sum(), "ntn": (~p & ~g).sum()}


def reduce_prediction_metrics(logging_outputs) -> None:
    """loss, kd_loss, ce_loss (per sentence, base 2), accuracy and MCC (vs gold), agreement (vs teacher)."""
    def total(key):
        return sum(log.get(key, 0) for log in logging_outputs)

    sample_size = total("sample_size")
    metrics.log_scalar("loss", total("loss") / max(sample_size, 1) / math.log(2), sample_size, round=3)
    for part, count in (("kd_loss", "nkd"), ("ce_loss", "ngold")):
        n = total(count)
        if n:
            metrics.log_scalar(part, total(part) / n / math.log(2), n, round=3)
    for name, hits, count in (("accuracy", "ncorrect", "ngold"), ("agreement", "nagree", "nkd")):
        n = total(count)
        if n:
            metrics.log_scalar(name, 100.0 * total(hits) / n, n, round=2)
    if any("ntp" in log for log in logging_outputs):
        # counts summed over the whole validation (or log interval), not an average of batch MCCs
        for key in CONFUSION:
            metrics.log_scalar_sum("_" + key, total(key))
        metrics.log_derived("mcc", lambda m: round(mcc_from_counts(*(float(m["_" + k].sum)
                                                                     for k in CONFUSION)), 2))
