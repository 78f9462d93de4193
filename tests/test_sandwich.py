"""MiniDisc's sandwich training and teacher-assistant choice: the lambda choice on a hand-made score
table, the metrics from confusion counts, and a tiny sandwich run through fairseq-train whose
assistant is saved dense and loads alone."""

import json
import re

import pytest
import torch

from user_dir.tasks.sandwich_distillation import choose_ta, metric_from_counts


def test_lambda_choice_on_a_hand_made_table():
    best = {0: 92.0, 50: 91.0, 60: 90.5, 70: 88.0, 80: 86.0, 90: 80.0, 95: 70.0}
    # lam 0.2: 50 -> 0.91 + 0.10 = 1.01; 60 -> 0.905 + 0.12 = 1.025; 70 -> 0.88 + 0.14 = 1.02;
    # 80 -> 0.86 + 0.16 = 1.02; 90 -> 0.80 + 0.18 = 0.98 (95 is above the target: not a candidate)
    s, v = choose_ta(best, teacher_sparsity=0, target=90, lam=0.2)
    assert s == 60 and v == pytest.approx(1.025)
    # a larger lambda favours sparser assistants: lam 0.5 -> 80: 0.86 + 0.40 = 1.26, 90: 0.80 + 0.45 = 1.25
    assert choose_ta(best, 0, 90, 0.5)[0] == 80
    # lambda 0: the best score above the teacher's sparsity (0 itself is not a candidate)
    assert choose_ta(best, 0, 90, 0.0)[0] == 50
    # only sparsities above the current teacher's: a second round from the 60% assistant
    assert choose_ta(best, 60, 90, 0.2)[0] in (70, 80)
    assert choose_ta(best, 60, 90, 0.2) == (70, pytest.approx(1.02))  # ties: the least sparse, as MiniDisc
    # fallbacks to the target: no candidate scored yet, or the final round
    assert choose_ta({0: 92.0, 95: 70.0}, 0, 90, 0.2) == (90.0, None)
    assert choose_ta(best, 0, 90, 0.2, final_round=True) == (90.0, pytest.approx(0.98))
    # sparsities are numbers, whatever their spelling ("5" < "10", not as strings)
    assert choose_ta({"5": 90.0, "10": 90.0, "85": 50.0}, "0", "90", 0.2)[0] == 10.0


def test_metrics_from_confusion_counts():
    c = {"ncorrect": 7, "ngold": 10, "ntp": 4, "nfp": 2, "nfn": 1, "ntn": 3}
    f1 = 100 * 8 / (8 + 2 + 1)
    assert metric_from_counts("accuracy", c) == pytest.approx(70.0)
    assert metric_from_counts("f1", c) == pytest.approx(f1)
    assert metric_from_counts("acc_and_f1", c) == pytest.approx((70 + f1) / 2)
    mcc = (4 * 3 - 2 * 1) / ((6 * 5 * 5 * 4) ** 0.5) * 100
    assert metric_from_counts("mcc", c) == pytest.approx(mcc)


def test_sandwich_training_through_fairseq_train(finetuned_teacher, imported_teacher, tmp_path):
    from conftest import REPO, run
    from user_dir.compress.encoder_checkpoint import load_encoder
    from user_dir.compress.sparsity import level, load_sparsity_map
    from user_dir.models.pruned_roberta import layer_shapes

    teacher = finetuned_teacher["dir"] / "checkpoint_best.pt"
    data = finetuned_teacher["work"] / "data-bin"
    run(["distill-importance", "--checkpoint", teacher, "--data", data, "--split", "valid", "--method", "mask",
         "--output", tmp_path / "imp.json"])
    run(["distill-sparsify", "--checkpoint", teacher, "--importance", tmp_path / "imp.json", "--grid", "0,50,90",
         "--output", tmp_path / "sp"])
    start = tmp_path / "sp" / "model.pt"
    flags = (tmp_path / "sp" / "model-args.txt").read_text().split()
    train = lambda updates: ["fairseq-train", data, "--max-update", str(updates),  # noqa: E731
                             "--user-dir", REPO / "user_dir", "--task", "sandwich_distillation",
                "--num-classes", "2", "--init-token", "0", *flags, "--finetune-from-model", start,
                "--sparsity-map", start, "--teacher-checkpoint", teacher, "--target-sparsity", "90",
                "--lam", "0.2", "--criterion", "layerwise_distillation", "--layer-map", "bottom",
                "--hidden-weight", "1", "--no-hidden-padding", "--prediction-loss", "soft_ce",
                "--optimizer", "adam", "--lr", "1e-4", "--batch-size", "32",
                "--validate-interval-updates", "2", "--save-dir", tmp_path / "save", "--no-epoch-checkpoints",
                "--num-workers", "0", "--log-format", "simple", "--log-interval", "1",
                "--bpe", "wordpiece", "--wordpiece-vocab", imported_teacher / "tokenizer.json"]
    proc = run(train(4))
    log = proc.stdout + proc.stderr
    # both trained sparsities (>= --trunc-sparsity 50) have their loss each update, their accuracy
    # at every validation, and the choice is logged
    assert re.search(r"loss_s50=[\d.]+, loss_s90=[\d.]+", log)
    valid = [line for line in log.splitlines() if "valid on 'valid'" in line]
    assert len(valid) >= 2
    for line in valid:
        assert re.search(r"accuracy_s50 [\d.]+ \| accuracy_s90 [\d.]+", line) and "ta_sparsity" in line
    bests = {}
    for line in valid:
        for s in ("50", "90"):
            acc = float(re.search(rf"accuracy_s{s} ([\d.]+)", line).group(1))
            bests[s] = max(bests.get(s, acc), acc)
    ta = json.loads((tmp_path / "save" / "ta" / "ta.json").read_text())
    want_s, want_v = choose_ta(bests, 0, 90, 0.2)
    assert {k: pytest.approx(v) for k, v in ta["best"].items()} == bests
    assert ta["sparsity"] == want_s and ta["value"] == pytest.approx(want_v)
    # the assistant is the student sliced at its sparsity; it loads with no other input
    model, _, _ = load_encoder(str(tmp_path / "save" / "ta" / "model.pt"))
    lv = level(load_sparsity_map(str(start)), want_s)
    assert layer_shapes(model)["layer_heads"] == lv["heads"] and layer_shapes(model)["layer_ffn_dims"] == lv["ffn"]
    assert load_sparsity_map(str(tmp_path / "save" / "ta" / "model.pt"))["grid"][0] == lv["sparsity"]
    # the task state in the checkpoint keeps the choice
    state = torch.load(tmp_path / "save" / "checkpoint_last.pt", weights_only=False)
    assert state["task_state"]["ta_sparsity"] == want_s

    # resumed for two more updates: the bests of the first launch are kept (read from checkpoint_last.pt)
    more = run(train(6))
    assert "resumed the assistant's choice" in more.stdout + more.stderr
    state = torch.load(tmp_path / "save" / "checkpoint_last.pt", weights_only=False)
    assert all(state["task_state"]["ta_best"][s] >= m for s, m in bests.items())
