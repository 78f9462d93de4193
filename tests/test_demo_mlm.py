"""demo/mlm_distill.sh on a slice of the IMDB corpus with tiny settings, after the main demo's smoke
run in the same work dir (its own file, so the suite's workers run it beside the others)."""

import json

from conftest import demo


def test_masked_lm_distillation_demo_from_an_empty_work_dir(tmp_path):
    work = tmp_path / "sst2"
    demo("mlm_distill.sh", "--smoke", work=work)  # runs demo/sst2.sh --smoke first
    m = work / "mlm"
    report = json.loads((m / "report.json").read_text())
    models = report["models"]
    assert list(models) == ["teacher", "distilled 3L", "extracted 3L, not distilled", "adapted teacher 6L"]
    # same shapes where they should be: the two 3-layer models, the teacher and its adapted copy
    assert models["distilled 3L"]["parameters"] == models["extracted 3L, not distilled"]["parameters"]
    assert models["adapted teacher 6L"]["parameters"] == models["teacher"]["parameters"]
    assert models["distilled 3L"]["parameters_without_embedding"] < models["teacher"]["parameters_without_embedding"]
    assert json.loads((m / "student" / "pruning.json").read_text())["layers"] == [0, 2, 4]

    summary = json.loads((m / "summary.json").read_text())
    goals = summary["goals"]
    share = models["distilled 3L"]["accuracy"] / models["teacher"]["accuracy"]
    assert goals["distilled_share_of_teacher_accuracy"] == round(share, 4)
    assert goals["keeps_97_percent"] == (share >= 0.97)
    assert goals["distilled_minus_extracted"] == round(
        models["distilled 3L"]["accuracy"] - models["extracted 3L, not distilled"]["accuracy"], 2)
    assert summary["distillation"]["updates"] >= 4 and summary["adaptation"]["updates"] >= 4
    assert {"kd_loss", "mlm_loss", "cos_loss", "mlm_accuracy", "teacher_mlm_accuracy"} <= set(
        summary["distillation"]["valid"])
    assert (m / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the distillation logged to TensorBoard
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(m / "tb" / "train_inner")).Reload()
    assert {"kd_loss", "mlm_loss", "cos_loss"} <= set(events.Tags()["scalars"])

    # a rerun finds every stage done and rewrites nothing
    stamp = (m / "summary.json").stat().st_mtime_ns, (m / "report.json").stat().st_mtime_ns
    out = demo("mlm_distill.sh", "--smoke", work=work)
    assert ((m / "summary.json").stat().st_mtime_ns, (m / "report.json").stat().st_mtime_ns) == stamp
    assert "done training in 0.0 seconds" in out.stdout
