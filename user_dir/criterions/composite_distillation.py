"""DistilBERT's composite loss for distilling a masked-LM teacher (Sanh et al. 2019).

With the student's and the teacher's token logits s, t (both read the same
masked input) and last hidden states h_s, h_t::

    loss = alpha_ce  * T^2 KL(softmax(t/T) || softmax(s/T))   per selected position
         + alpha_mlm * CE(s, original token)                  per masked-LM target
         + alpha_mse * ||s - t||^2                            per selected position
         + alpha_cos * (1 - cos(h_s, h_t))                    per real token

The selected positions are every real (non-padding) token, or with
``--restrict-ce-to-mask`` the masked-LM targets only.  Each term is its mean
(``distillation_losses``) and is logged on its own, with the student's and the
teacher's accuracy on the targets.  ``--alpha-clm`` is DistilBERT's causal-LM term, for GPT-2
students; a masked-LM student refuses it.
"""

import math
from dataclasses import dataclass, field

import torch
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from .distillation_losses import cosine, cross_entropy, logit_mse, prediction_kl, weighted


@dataclass
class CompositeDistillationConfig(FairseqDataclass):
    alpha_ce: float = field(default=5.0, metadata={"help": "weight of the distillation KL (DistilBERT: 5)"})
    alpha_mlm: float = field(default=2.0, metadata={"help": "weight of the masked-LM cross-entropy (2)"})
    alpha_mse: float = field(default=0.0, metadata={"help": "weight of the logit MSE (0)"})
    alpha_cos: float = field(default=1.0, metadata={"help": "weight of the hidden-state cosine loss (1)"})
    alpha_clm: float = field(default=0.0, metadata={"help": "causal-LM term: only for causal-LM students"})
    temperature: float = field(default=2.0, metadata={"help": "softmax temperature T of the KL (DistilBERT: 2)"})
    restrict_ce_to_mask: bool = field(
        default=False, metadata={"help": "take the KL and MSE at the masked-LM targets only (default: every "
                                         "real token)"}
    )


@register_criterion("composite_distillation", dataclass=CompositeDistillationConfig)
class CompositeDistillationCriterion(FairseqCriterion):
    def __init__(self, cfg: CompositeDistillationConfig, task):
        super().__init__(task)
        weights = (cfg.alpha_ce, cfg.alpha_mlm, cfg.alpha_mse, cfg.alpha_cos)
        if cfg.alpha_clm:
            raise ValueError("--alpha-clm is the causal-LM loss of a GPT-2 student; this student is a masked "
                             "LM: use --alpha-mlm")
        if any(w < 0 for w in weights) or not any(weights):
            raise ValueError("--alpha-ce/--alpha-mlm/--alpha-mse/--alpha-cos must be >= 0, one of them > 0")
        if cfg.temperature <= 0:
            raise ValueError(f"--temperature must be positive, got {cfg.temperature}")
        self.cfg = cfg
        needs_teacher = cfg.alpha_ce > 0 or cfg.alpha_mse > 0 or cfg.alpha_cos > 0
        teacher = task.load_teacher() if hasattr(task, "load_teacher") else None
        if needs_teacher and teacher is None:
            raise ValueError("--alpha-ce/--alpha-mse/--alpha-cos compare with the teacher: pass "
                             "--teacher-checkpoint to the task")
        student = getattr(task, "student_shape", None)
        if cfg.alpha_cos > 0 and teacher is not None and student is not None and student["dim"] != teacher.shape["dim"]:
            raise ValueError(f"--alpha-cos compares hidden states: the student's width is {student['dim']}, the "
                             f"teacher's {teacher.shape['dim']}")

    def forward(self, model, sample, reduce=True):
        cfg = self.cfg
        tokens, target = sample["net_input"]["src_tokens"], sample["target"]
        pad = self.task.source_dictionary.pad()
        real, masked = tokens.ne(pad), target.ne(pad)
        # with --restrict-ce-to-mask only the targets need vocabulary logits: the LM head runs there alone
        select = masked if cfg.restrict_ce_to_mask else real
        logits, extra = model(tokens, features_only=False, return_all_hiddens=cfg.alpha_cos > 0,
                              masked_tokens=select)  # [N selected, V]
        B = tokens.size(0)
        terms, weights = [], []
        log = {"ntokens": sample["ntokens"], "nsentences": B, "sample_size": B}
        teacher = None
        if cfg.alpha_ce > 0 or cfg.alpha_mse > 0 or cfg.alpha_cos > 0:
            teacher = self.task.load_teacher()(tokens, select)
        if cfg.alpha_ce > 0:
            kl = prediction_kl(logits, teacher[0], cfg.temperature)
            terms.append(kl)
            weights.append(cfg.alpha_ce)
            log["kd_loss"] = kl.mean.data * B
        if cfg.alpha_mse > 0:
            mse = logit_mse(logits, teacher[0])
            terms.append(mse)
            weights.append(cfg.alpha_mse)
            log["mse_loss"] = mse.mean.data * B
        n_targets = int(masked.sum())
        if n_targets:
            # the targets among the selected positions (all of them when the selection is the targets)
            target_logits = logits if cfg.restrict_ce_to_mask else logits[masked[select]]
            mlm = cross_entropy(target_logits, target[masked])
            if cfg.alpha_mlm > 0:
                terms.append(mlm)
                weights.append(cfg.alpha_mlm)
            log.update(mlm_loss=mlm.sum.data, ntargets=n_targets,
                       ncorrect=(target_logits.argmax(-1) == target[masked]).sum())
            if teacher is not None:  # the teacher's accuracy on the same targets: the bar to reach
                t_logits = teacher[0] if cfg.restrict_ce_to_mask else teacher[0][masked[select]]
                log["teacher_ncorrect"] = (t_logits.argmax(-1) == target[masked]).sum()
        if cfg.alpha_cos > 0:
            h = extra["inner_states"][-1].transpose(0, 1)
            cos = cosine(h, teacher[1], padding_mask=~real)
            terms.append(cos)
            weights.append(cfg.alpha_cos)
            log["cos_loss"] = cos.mean.data * B
        loss = weighted(terms, weights, B)
        log["loss"] = loss.data
        return loss, B, log

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        n = total("sample_size")
        metrics.log_scalar("loss", total("loss") / max(n, 1) / math.log(2), n, round=3)
        for part in ("kd_loss", "mse_loss", "cos_loss"):
            if any(part in log for log in logging_outputs):
                metrics.log_scalar(part, total(part) / max(n, 1), n, round=4)
        targets = total("ntargets")
        if targets:
            metrics.log_scalar("mlm_loss", total("mlm_loss") / targets / math.log(2), targets, round=3)
            metrics.log_scalar("mlm_accuracy", 100.0 * total("ncorrect") / targets, targets, round=2)
            if any("teacher_ncorrect" in log for log in logging_outputs):
                metrics.log_scalar("teacher_mlm_accuracy", 100.0 * total("teacher_ncorrect") / targets, targets,
                                   round=2)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
