import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from fairseq.logging import metrics

from user_dir.criterions.distillation import DistillationConfig, DistillationCriterion


class FixedModel(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, src_tokens, features_only=True, classification_head_name=None, **kw):
        return self.logits, {}


def crit(**kw):
    cfg = DistillationConfig(**kw)
    return DistillationCriterion(cfg, SimpleNamespace())


def sample(teacher=None, target=None, n=4):
    s = {"net_input": {"src_tokens": torch.zeros(n, 1, dtype=torch.long)}, "ntokens": n, "nsentences": n}
    if teacher is not None:
        s["distill_target"] = teacher
    if target is not None:
        s["target"] = target
    return s


S = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
T = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, -2.0], [0.0, 4.0, 1.0], [3.0, 0.0, 0.0]])
Y = torch.tensor([0, 2, 1, 1])


def kl(t, s, temp):
    p = F.softmax(t / temp, -1)
    return (p * (p.log() - F.log_softmax(s / temp, -1))).sum() * temp ** 2


@pytest.mark.parametrize("temp", [1.0, 2.0, 5.0])
def test_kl_term_is_t2_scaled_kl(temp):
    loss, n, log = crit(distillation_temperature=temp)(FixedModel(S), sample(T, Y))
    assert n == 4
    assert torch.allclose(loss, kl(T, S, temp), atol=1e-5)
    assert log["ncorrect"] == 3 and log["nagree"] == 3  # preds 0,2,1,0


def test_alpha_mixes_kd_and_gold():
    loss, _, log = crit(distillation_alpha=0.3)(FixedModel(S), sample(T, Y))
    ce = F.cross_entropy(S, Y, reduction="sum")
    assert torch.allclose(loss, 0.3 * kl(T, S, 1.0) + 0.7 * ce, atol=1e-5)
    assert torch.allclose(log["ce_loss"], ce) and torch.allclose(log["kd_loss"], kl(T, S, 1.0), atol=1e-5)


def test_missing_parts():
    gold_only, _, log = crit(distillation_alpha=0.3)(FixedModel(S), sample(None, Y))
    assert torch.allclose(gold_only, F.cross_entropy(S, Y, reduction="sum"))
    assert "nagree" not in log
    teacher_only, _, log = crit(distillation_alpha=0.5)(FixedModel(S), sample(T, None))
    assert torch.allclose(teacher_only, 0.5 * kl(T, S, 1.0), atol=1e-5)
    assert "ncorrect" not in log


def test_mse_is_squared_logit_error():
    loss, _, _ = crit(distillation_loss="mse")(FixedModel(S), sample(T, Y))
    assert torch.allclose(loss, ((S - T) ** 2).sum())


def test_bad_settings_refused():
    with pytest.raises(ValueError, match="alpha"):
        crit(distillation_alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        crit(distillation_temperature=0.0)


def test_reduce_metrics():
    c = crit(distillation_alpha=0.5)
    logs = [c(FixedModel(S), sample(T, Y))[2], c(FixedModel(S), sample(T, None))[2]]
    with metrics.aggregate() as agg:
        DistillationCriterion.reduce_metrics(logs)
    vals = agg.get_smoothed_values()
    assert vals["accuracy"] == 75.0  # gold only in the first batch
    assert vals["agreement"] == 75.0
    assert math.isclose(vals["kd_loss"], kl(T, S, 1.0).item() / 4 / math.log(2), rel_tol=1e-3)


def test_validation_mcc_is_over_all_batches():
    """Validation reduces batch by batch: the MCC must be that of all predictions, as scikit-learn's."""
    from sklearn.metrics import matthews_corrcoef

    c = crit()
    g = torch.Generator().manual_seed(0)
    preds, golds = [], []
    with metrics.aggregate() as agg:
        for _ in range(5):
            logits, gold = torch.randn(7, 2, generator=g), torch.randint(0, 2, (7,), generator=g)
            DistillationCriterion.reduce_metrics([c(FixedModel(logits), sample(None, gold, n=7))[2]])
            preds += logits.argmax(-1).tolist()
            golds += gold.tolist()
    assert agg.get_smoothed_values()["mcc"] == pytest.approx(100 * matthews_corrcoef(golds, preds), abs=0.01)
    # three classes: no MCC
    with metrics.aggregate() as agg:
        DistillationCriterion.reduce_metrics([c(FixedModel(S), sample(None, Y))[2]])
    assert "mcc" not in agg.get_smoothed_values()
