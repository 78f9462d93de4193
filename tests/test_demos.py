"""The demos as users run them: README's commands, the Hydra config, and each demo's mechanism."""

import fcntl
import json
import re
import shlex
import subprocess
import sys

from omegaconf import OmegaConf

from conftest import REPO, demo


def commands(text):
    """Shell commands of a block: continuation lines joined, comments and blanks dropped."""
    text = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in text.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def readme_pipeline():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The sparse-distillation pipeline, command by command", 1)[1]
    return commands(section.split("```bash\n", 1)[1].split("```", 1)[0])


def test_readme_pipeline_is_the_demos_commands():
    dry = commands(demo("sst2.sh", "--dry-run").stdout)
    assert [shlex.split(c) for c in readme_pipeline()] == [shlex.split(c) for c in dry]


def test_hydra_config_gives_the_demos_fairseq_config():
    """demo/config/sparse_distillation.yaml and step 9's flags make the same fairseq config."""
    from fairseq import options
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.models import MODEL_DATACLASS_REGISTRY
    from fairseq.optim import OPTIMIZER_DATACLASS_REGISTRY
    from fairseq.optim.lr_scheduler import LR_SCHEDULER_DATACLASS_REGISTRY
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    train = next(c for c in commands(demo("sst2.sh", "--dry-run").stdout)
                 if c.startswith("fairseq-train data-bin"))
    argv = shlex.split(train)[1:]
    argv[argv.index("--user-dir") + 1] = str(REPO / "user_dir")
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    shell = convert_namespace_to_omegaconf(args)
    yaml = OmegaConf.load(REPO / "demo" / "config" / "sparse_distillation.yaml")
    registries = {"task": TASK_DATACLASS_REGISTRY, "model": MODEL_DATACLASS_REGISTRY,
                  "criterion": CRITERION_DATACLASS_REGISTRY, "optimizer": OPTIMIZER_DATACLASS_REGISTRY,
                  "lr_scheduler": LR_SCHEDULER_DATACLASS_REGISTRY}
    # paths are given on the command line (absolute under Hydra), and interpolated fields follow others
    given = {"task.data", "model.embed_init", "common.user_dir"}
    differ = []
    for group, registry in registries.items():
        assert yaml[group]["_name"] == shell[group]["_name"], group
        dc = registry[yaml[group]["_name"]]
        hydra_side = OmegaConf.merge(OmegaConf.structured(dc), yaml[group])
        for name in dc.__dataclass_fields__:
            if name.startswith("_") or f"{group}.{name}" in given:
                continue
            if str(dc.__dataclass_fields__[name].default).startswith("${"):
                continue
            a, b = OmegaConf.select(hydra_side, name), shell[group].get(name)
            if str(a) != str(b):
                differ.append(f"{group}.{name}: yaml {a!r}, shell {b!r}")
    for group in ("common", "optimization", "dataset", "checkpoint"):
        for name in yaml[group]:
            if f"{group}.{name}" in given:
                continue
            value = yaml[group][name]
            if str(value) != str(shell[group][name]):
                differ.append(f"{group}.{name}: yaml {value!r}, shell {shell[group][name]!r}")
    assert not differ, differ
    # a flag fairseq would otherwise default (8), dropping up to 7 examples an epoch
    assert shell.dataset.required_batch_size_multiple == yaml.dataset.required_batch_size_multiple == 1


def test_a_work_dir_takes_one_run_at_a_time(tmp_path):
    work = tmp_path / "sst2"
    work.mkdir()
    with open(work / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (work / ".lock.pid").write_text("4242\n")
        proc = demo("sst2.sh", "--smoke", work=work, check=False)
    assert proc.returncode == 1
    assert f"work directory {work} is in use by process 4242" in proc.stderr
    assert not (work / "train.txt").exists()


def test_demos_in_the_readmes_order_from_an_empty_work_dir(tmp_path):
    """Each demo's mechanism on a slice with tiny settings, as the README runs them: the main job,
    then its corpus path, D-BERT and ROSITA on its work directory (CoLA and MRPC: test_demo_glue.py)."""
    base = tmp_path / "sst2"
    main = demo("sst2.sh", "--smoke", work=base)
    report = json.loads((base / "report.json").read_text())
    assert list(report["models"]) == ["teacher", "DAN"]
    assert "Namespace(" not in main.stdout + main.stderr  # fairseq's config dumps stay in the logs
    assert (base / "logs" / "dan.log").exists() and "valid on" in main.stdout
    # every step's wall time, the training steps' too
    times = dict(line.split("\t") for line in (base / "logs" / "steps.tsv").read_text().splitlines())
    assert {"import-teacher", "teacher-finetune", "dan", "report"} <= set(times)
    # a copy can take under 0.05 s (0.0); fine-tuning takes seconds
    assert all(float(t) >= 0 for t in times.values()) and float(times["teacher-finetune"]) > 1

    # the corpus path: IMDB sentences labelled by the main job's teacher, a DAN per transfer-set size
    demo("sst2.sh", "--corpus", "--smoke", work=base)
    curve = json.loads((base / "corpus" / "curve.json").read_text())
    stats = json.loads((base / "corpus" / "sentences.txt.json").read_text())
    assert stats["documents"] == 120 and stats["kept"] > 500 and stats["duplicates"] >= 0
    sizes = [p["corpus_sentences"] for p in curve["points"]]
    assert sizes == [0, 300, stats["kept"]] and [len(p["runs"]) for p in curve["points"]] == [1, 1, 2]
    assert curve["points"][0]["transfer_rows"] == 600 and (base / "corpus" / "curve.png").stat().st_size > 0
    # every run is timed against the main job's DAN, whose accuracy report.py measured on its own
    assert curve["reference"]["accuracy"] == report["models"]["DAN"]["accuracy"]
    for run in (r for p in curve["points"] for r in p["runs"]):
        assert run["sentences_per_second"] > 0 and len(run["speed_vs_reference_rounds"]) == 1
        assert run["speed_vs_reference"] == run["speed_vs_reference_rounds"][0] > 0
    import numpy as np
    assert np.load(base / "corpus" / f"bin-{stats['kept']}" / "distill" / "train.npy").shape == (600 + stats["kept"], 2)

    demo("dbert_sst2.sh", "--smoke", work=base)
    report = json.loads((base / "dbert" / "labelled" / "report.json").read_text())
    assert list(report["models"]) == [
        "teacher", "BiLSTM gold", "BiLSTM KD", "BiLSTM KD+aug", "DAN KD", "DAN KD+aug"]

    demo("rosita_sst2.sh", "--smoke", work=base)
    report = json.loads((base / "rosita" / "report.json").read_text())
    assert list(report["models"]) == ["teacher", "ROSITA setting 1", "ROSITA setting 2", "ROSITA setting 3",
                                      "ROSITA setting 4", "pruned, gold only", "BERT(student) 6L",
                                      "depth-pruned BERT(student) 4L"]
    pruned = report["models"]["ROSITA setting 1"]
    assert pruned["parameters_without_embedding"] < report["models"]["teacher"]["parameters_without_embedding"] / 3
    shapes = json.loads((base / "rosita" / "pruned1" / "pruning.json").read_text())["shapes"]
    assert shapes == {"encoder_layers": 4, "layer_heads": [4] * 4, "layer_ffn_dims": [512] * 4, "embed_rank": 128}
    # the iterative settings end at the same shape, so the four compare row by row
    for setting in ("ROSITA setting 3", "ROSITA setting 4"):
        assert report["models"][setting]["parameters"] == pruned["parameters"]
    assert report["models"]["depth-pruned BERT(student) 4L"]["parameters"] < report["models"]["teacher"]["parameters"]
    # another seed trains the students again into rosita/seed2 on the same transfer set and pruned teacher
    demo("rosita_sst2.sh", "--smoke", work=base, env={"SEED": "2", "SETTINGS": "1"})
    seed2 = base / "rosita" / "seed2"
    report2 = json.loads((seed2 / "report.json").read_text())
    assert list(report2["models"]) == ["teacher", "ROSITA setting 1", "pruned, gold only"]
    assert sorted(p.name for p in seed2.iterdir() if p.is_dir()) == ["baseline", "s1"]
    import torch
    for name in ("s1", "baseline"):
        state = torch.load(seed2 / name / "checkpoint_best.pt", map_location="cpu", weights_only=False)
        assert state["cfg"]["common"]["seed"] == 2
    first = [base / "rosita" / "report.json", seed2 / "report.json"]
    subprocess.run([sys.executable, str(REPO / "demo" / "seeds.py"), str(first[1]), str(first[0]), "--compare",
                    "ROSITA setting 1", "pruned, gold only", "--output", str(base / "rosita" / "seeds")], check=True)
    summary = json.loads((base / "rosita" / "seeds.json").read_text())
    for name in report2["models"]:
        values = [json.loads(p.read_text())["models"][name]["accuracy"] for p in first[::-1]]
        assert summary["rows"][name]["accuracy"]["seeds"] == values
    assert summary["compare"][0]["differences"] == [
        round(r["models"]["ROSITA setting 1"]["accuracy"] - r["models"]["pruned, gold only"]["accuracy"], 2)
        for r in (report2, report)]
    # a transfer sample of another size than the run asks for is refused, naming it, and left alone
    kd = base / "rosita" / "kd.txt"
    rows = kd.read_text(encoding="utf-8")
    kd.write_text("".join(rows.splitlines(keepends=True)[:-1]), encoding="utf-8")
    refused = demo("rosita_sst2.sh", "--smoke", work=base, check=False)
    assert refused.returncode != 0 and f"{base}/rosita/kd.txt has {rows.count(chr(10)) - 1} rows" in refused.stderr
    assert "remove rosita/kd.txt, rosita/kd-bin" in refused.stderr
    kd.write_text(rows, encoding="utf-8")

    # a rerun finds every step done
    again = demo("sst2.sh", "--smoke", work=base)
    assert "training log" in again.stdout and "failed" not in again.stderr
