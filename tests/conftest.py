import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from user_dir.data.teacher_targets import save_teacher_targets

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DISTILL_SHARED_DATA", REPO.parent / "shared" / "data"))
BIN = Path(sys.executable).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device, skipped without one (tests/test_gpu.py)")


def demo(name, *args, work=None, check=True, env=None):
    """Run demo/NAME with ARGS, its work directory at WORK (and ENV added); raise with its output tail if it fails."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {}))
    if work is not None:
        env["WORK"] = str(work)
    proc = subprocess.run(["bash", str(REPO / "demo" / name), *args], env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def read_tsv(path, skip_header=True):
    """Rows of a GLUE TSV (BOM on the header tolerated)."""
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.split("\t") for line in lines[1 if skip_header else 0:]]


@pytest.fixture
def float64_fairseq(monkeypatch):
    """fairseq's attention softmax and GELU cast to float32; keep a float64 model float64 throughout
    (for models built after this fixture), so a finite difference is compared at float64's precision."""
    import torch.nn.functional as F
    import fairseq.modules
    from fairseq import utils

    monkeypatch.setattr(utils, "softmax", lambda x, dim, onnx_trace=False: F.softmax(x, dim=dim))
    monkeypatch.setattr(fairseq.modules, "gelu", F.gelu)  # get_activation_fn imports it at build time


@pytest.fixture(scope="session")
def glue():
    if not (DATA / "glue" / "SST-2" / "train.tsv").exists():
        pytest.fail(f"shared data not found at {DATA} (set DISTILL_SHARED_DATA)")
    return DATA / "glue"


def run(cmd, cwd=None, check=True):
    """Run one of the console tools (or fairseq's) from this venv; return the process."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONUNBUFFERED="1")
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def valid_accuracies(log):
    """The validation accuracies of a fairseq-train log, epoch by epoch."""
    return [float(m) for m in re.findall(r"\| valid \|.*? accuracy ([\d.]+)", log)]


N_TRAIN = 6000
TRAIN_FLAGS = [
    "--user-dir", REPO / "user_dir", "--task", "feature_based_sentence_prediction",
    "--arch", "feature_based_linear_model", "--criterion", "distillation", "--optimizer", "mixed_adam",
    "--num-classes", "2", "--distillation-target", "--lr", "3e-3", "--batch-size", "32",
    "--encoder-embed-dim", "32", "--hidden-dim", "32", "--feature-dropout", "0.1",
    "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric",
    "--log-format", "simple", "--log-interval", "100", "--seed", "3", "--weight-decay", "0.01",
]


def stand_in_teacher(train_texts, train_labels, *texts):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2)
    clf = LogisticRegression(C=10, max_iter=2000).fit(vec.fit_transform(train_texts), train_labels)
    return [np.stack([-clf.decision_function(vec.transform(t)) / 2,
                      clf.decision_function(vec.transform(t)) / 2], 1).astype(np.float32) for t in texts]


def preprocess(src_dir, data_bin, vocab):
    run(["fairseq-preprocess", "--only-source", "--srcdict", vocab, "--trainpref", src_dir / "train.ng",
         "--validpref", src_dir / "dev.ng", "--destdir", data_bin / "input0", "--workers", "2"])
    (src_dir / "labels.txt").write_text("0 0\n1 0\n")
    run(["fairseq-preprocess", "--only-source", "--srcdict", src_dir / "labels.txt",
         "--trainpref", src_dir / "train.label", "--validpref", src_dir / "dev.label",
         "--destdir", data_bin / "label", "--workers", "2"])
    shutil.copy(str(vocab) + ".json", data_bin / "input0" / "ngrams.json")


@pytest.fixture(scope="session")
def sst2(glue, tmp_path_factory):
    """A data-bin of an SST-2 slice with gold labels and stand-in teacher logits."""
    work = tmp_path_factory.mktemp("sst2")
    train = read_tsv(glue / "SST-2" / "train.tsv")
    dev = read_tsv(glue / "SST-2" / "dev.tsv")
    sub = train[:N_TRAIN]
    for name, rows in (("train", sub), ("dev", dev)):
        (work / f"{name}.txt").write_text("".join(r[0] + "\n" for r in rows), encoding="utf-8")
        (work / f"{name}.label").write_text("".join(r[1] + "\n" for r in rows))
    vocab = work / "vocab.txt"
    run(["distill-ngram-dict", "--input", work / "train.txt", "--output", vocab,
         "--ngram-range", "1", "3", "--max-features", "30000", "--workers", "2"])
    for name in ("train", "dev"):
        run(["distill-extract-ngrams", "--vocab", vocab, "--input", work / f"{name}.txt",
             "--output", work / f"{name}.ng", "--workers", "2"])
    data_bin = work / "data-bin"
    preprocess(work, data_bin, vocab)
    t_train, t_dev = stand_in_teacher([r[0] for r in train], [int(r[1]) for r in train],
                                      [r[0] for r in sub], [r[0] for r in dev])
    save_teacher_targets(str(data_bin / "distill" / "train.npy"), t_train, ["0", "1"])
    save_teacher_targets(str(data_bin / "distill" / "valid.npy"), t_dev, ["0", "1"])
    teacher_acc = 100.0 * np.mean(t_dev.argmax(1) == np.array([int(r[1]) for r in dev]))
    return {"work": work, "data_bin": data_bin, "vocab": vocab, "teacher_acc": teacher_acc, "dev": dev}


WEIGHTS = REPO / ".cache" / "weights" / "all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def minilm():
    """The all-MiniLM-L6-v2 Hugging Face directory (scripts/bootstrap.sh unpacks it)."""
    if not (WEIGHTS / "config.json").exists():
        pytest.fail(f"{WEIGHTS} missing: run scripts/bootstrap.sh")
    return WEIGHTS


@pytest.fixture(scope="session")
def imported_teacher(minilm, tmp_path_factory):
    """all-MiniLM-L6-v2 converted by the real distill-import-hf command."""
    out = tmp_path_factory.mktemp("teacher")
    run(["distill-import-hf", "--hf-dir", minilm, "--output", out])
    return out


def wordpiece_data_bin(work, teacher_dir, rows):
    """SST-2 rows ({split: [(text, label), ...]}, splits train and dev) in the teacher's WordPiece
    tokens, binarized with its dictionary: WORK/data-bin with input0/ and label/."""
    for split, rs in rows.items():
        (work / f"{split}.txt").write_text("".join(r[0] + "\n" for r in rs))
        (work / f"{split}.label").write_text("".join(r[1] + "\n" for r in rs))
        run(["distill-bpe-encode", "--wordpiece-vocab", teacher_dir / "tokenizer.json",
             "--input", work / f"{split}.txt", "--output", work / f"{split}.bpe"])
    data = work / "data-bin"
    run(["fairseq-preprocess", "--only-source", "--srcdict", teacher_dir / "dict.txt", "--trainpref",
         work / "train.bpe", "--validpref", work / "dev.bpe", "--destdir", data / "input0"])
    run(["fairseq-preprocess", "--only-source", "--srcdict", REPO / "data-bin-templates" / "sst2-binary" / "label" /
         "dict.txt", "--trainpref", work / "train.label", "--validpref", work / "dev.label", "--destdir", data / "label"])
    return data


@pytest.fixture(scope="session")
def finetuned_teacher(imported_teacher, glue, tmp_path_factory):
    """The imported MiniLM fine-tuned for a few updates with fairseq's sentence_prediction."""
    work = tmp_path_factory.mktemp("finetune")
    rows = {"train": read_tsv(glue / "SST-2" / "train.tsv")[:320], "dev": read_tsv(glue / "SST-2" / "dev.tsv")[:64]}
    data = wordpiece_data_bin(work, imported_teacher, rows)
    flags = (imported_teacher / "model-args.txt").read_text().split()
    run(["fairseq-train", data, "--user-dir", REPO / "user_dir", "--restore-file", imported_teacher / "model.pt",
         *flags, "--task", "sentence_prediction", "--num-classes", "2", "--init-token", "0",
         "--criterion", "sentence_prediction", "--reset-optimizer", "--reset-dataloader", "--reset-meters",
         "--optimizer", "adam", "--lr", "5e-5", "--batch-size", "32", "--max-update", "8",
         "--bpe", "wordpiece", "--wordpiece-vocab", imported_teacher / "tokenizer.json",
         "--save-dir", work / "ckpt", "--no-epoch-checkpoints", "--num-workers", "0"])
    return {"dir": work / "ckpt", "work": work, "texts": [r[0] for r in rows["dev"]]}
