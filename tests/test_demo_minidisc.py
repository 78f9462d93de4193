"""demo/minidisc.sh on MRPC slices with tiny settings, from an empty work dir (it runs demo/mrpc.sh
--smoke first): MiniDisc, direct KD, MaxiDisc and the layer-dropped paths, the report, the Hugging
Face exports and the summary, then reruns that train nothing (its own file, so the suite's workers
run it beside the others)."""

import json

from conftest import demo


def seconds(stage):
    return int((stage / "seconds").read_text())


def test_minidisc_demo_from_an_empty_work_dir(tmp_path):
    work = tmp_path / "mrpc"
    demo("minidisc.sh", "--smoke", work=work)
    r = work / "minidisc"
    t = r / "90"

    # one assistant round at most (TA_ROUNDS 2), chosen from the grid between the teacher and the target
    ta = json.loads((t / "minidisc-r1" / "ta" / "ta.json").read_text())
    assert ta["sparsity"] in (50, 90)
    minidisc = "MiniDisc (no assistant)" if ta["sparsity"] == 90 else "MiniDisc (assistant 50%)"
    rounds = [t / "minidisc-r1"] + ([t / "minidisc-r2"] if ta["sparsity"] != 90 else [])
    assert json.loads((rounds[-1] / "ta" / "ta.json").read_text())["sparsity"] == 90
    assert (t / "minidisc-r2").exists() == (len(rounds) == 2)
    # with an assistant, step 4c trains the target alone from it too (one more row and path)
    alone = [f"{minidisc}, last stage alone"] if len(rounds) == 2 else []
    assert (t / "minidisc-last" / "done").exists() == bool(alone)

    report = json.loads((t / "report.json").read_text())["models"]
    # report.py's order: the glue_distillation students, then the sentence_prediction ones
    assert list(report) == ["teacher", "direct KD", "MaxiDisc via 50%", "KD 2L", "KD 4L→2L", *alone, minidisc]
    assert all("f1" in m for m in report.values())
    # every 90% student has the target's shape, every 2-layer one the bottom two layers' shape
    at90 = {report[n]["parameters"] for n in (minidisc, "direct KD", "MaxiDisc via 50%", *alone)}
    assert len(at90) == 1 and at90.pop() < report["teacher"]["parameters"]
    assert report["KD 2L"]["parameters"] == report["KD 4L→2L"]["parameters"] < report["teacher"]["parameters"]

    # paths and their stages, shared by prefix
    paths = {line.split("\t")[0]: line.rstrip("\n").split("\t")[1:] for line in open(t / "paths.tsv")}
    assert paths == {
        "direct KD": ["minidisc/stages/90", "minidisc/stages/90"],
        "MaxiDisc via 50%": ["minidisc/stages/50-90", "minidisc/stages/50 minidisc/stages/50-90"],
        "KD 2L": ["minidisc/stages/2L", "minidisc/stages/2L"],
        "KD 4L→2L": ["minidisc/stages/4L-2L", "minidisc/stages/4L minidisc/stages/4L-2L"],
        **{name: ["minidisc/90/minidisc-last", "minidisc/90/minidisc-r1 minidisc/90/minidisc-last"]
           for name in alone},
    }
    assert json.loads((r / "stages" / "4L" / "init" / "pruning.json").read_text())["layers"] == [0, 1, 2, 3]

    summary = json.loads((t / "summary.json").read_text())
    rows = summary["models"]
    assert list(rows) == [minidisc] + list(report)[1:-1]
    assert rows[minidisc]["train_seconds"] == sum(map(seconds, rounds))
    assert rows["MaxiDisc via 50%"]["train_seconds"] == seconds(r / "stages" / "50") + seconds(r / "stages" / "50-90")
    for name in alone:  # the assistant's round and the stage alone
        assert rows[name]["train_seconds"] == seconds(t / "minidisc-r1") + seconds(t / "minidisc-last")
    assert summary["maxidisc_trials"] == 1
    assert summary["maxidisc_train_seconds"] == rows["MaxiDisc via 50%"]["train_seconds"]
    for name, row in rows.items():
        assert row["accuracy"] == report[name]["accuracy"] and row["f1"] == report[name]["f1"]
    # the layer-dropped students keep equal widths: Hugging Face takes them; a sliced one either
    # maps to pruned_heads or is refused naming its layer
    for name in ("KD 2L", "KD 4L→2L"):
        out = rows[name]["hf_export"]
        assert out.startswith("exported: ")
        assert (work / out.split(": ", 1)[1] / "model.safetensors").exists()
    for name in (minidisc, "direct KD", "MaxiDisc via 50%", *alone):
        out = rows[name]["hf_export"]
        assert out.startswith("exported: ") or ("refused: " in out and "layer" in out), out

    # a rerun trains nothing and keeps the report; fewer paths redo the report only
    stamp = (t / "report.json").stat().st_mtime_ns
    spent = {d: seconds(d) for d in (r / "stages").iterdir()}
    out = demo("minidisc.sh", "--smoke", work=work).stdout
    assert (t / "report.json").stat().st_mtime_ns == stamp and "training log:" not in out
    demo("minidisc.sh", "--smoke", "--paths", "2L", work=work)
    assert list(json.loads((t / "report.json").read_text())["models"])[-2 - len(alone):] == ["KD 2L", *alone, minidisc]
    assert "KD 4L→2L" not in json.loads((t / "summary.json").read_text())["models"]
    assert {d: seconds(d) for d in (r / "stages").iterdir()} == spent
