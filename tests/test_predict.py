import json

import numpy as np
import pytest

from user_dir.cli.predict import main as predict_main
from user_dir.preprocess.examples import read_examples
from user_dir.inference.predict import predict_file

from conftest import run


class StubHub:
    """Predicts class '1' for texts containing 'good' (stands in for a trained DAN)."""

    classes = ["0", "1"]

    def predict_proba(self, texts, batch_size=1024):
        good = np.array([("good" in (t if isinstance(t, str) else " ".join(t))) for t in texts], dtype=float)
        return np.stack([1 - 0.9 * good - 0.05, 0.9 * good + 0.05], axis=1)


def test_text_and_tsv_reading(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes(b"\xef\xbb\xbfsentence\tlabel\r\ngood film\t1\n\t0\nbad \xff\t0")
    texts, labels = read_examples(str(path), "tsv", (0,), 1, header=True)
    assert texts == ["good film", "", "bad \ufffd"] and labels == ["1", "0", "0"]
    texts, labels = read_examples(str(path), "text")
    assert len(texts) == 4 and labels is None
    pairs, _ = read_examples(str(path), "tsv", (0, 1), None, header=True)
    assert pairs[0] == ("good film", "1")


def test_refusals(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("a\t1\nb\n")
    with pytest.raises(ValueError, match=r"x.tsv: line 2 has 1 tab-separated columns"):
        read_examples(str(path), "tsv", (0,), 1)
    path.write_text("good\t1\nbad\tneutral\n")
    with pytest.raises(ValueError, match=r"x.tsv: line 2 has label 'neutral', not one of \['0', '1'\]"):
        predict_file(StubHub(), str(path), None, "tsv", (0,), 1)
    with pytest.raises(ValueError, match="need --input-format tsv"):
        read_examples(str(path), "text", (0,), 1)


@pytest.mark.parametrize("fmt", ["tsv", "jsonl"])
def test_outputs_and_accuracy(tmp_path, fmt):
    path = tmp_path / "x.tsv"
    path.write_text("good film\t1\nbad film\t0\ngood grief\t0\n")
    out = tmp_path / f"pred.{fmt}"
    result = predict_file(StubHub(), str(path), str(out), "tsv", (0,), 1, output_format=fmt)
    assert result["examples"] == 3 and result["accuracy"] == pytest.approx(66.67)
    assert result["f1"] == pytest.approx(66.67)  # class "1": tp 1, predicted 2, gold 1
    lines = out.read_text().splitlines()
    if fmt == "tsv":
        assert lines[0] == "label\tp_0\tp_1" and lines[1].split("\t")[0] == "1" and len(lines) == 4
    else:
        rows = [json.loads(line) for line in lines]
        assert [r["label"] for r in rows] == ["1", "0", "1"]
        assert rows[0]["probs"]["1"] == pytest.approx(0.95)


def test_shard_errors_name_file_lines(tmp_path):
    from user_dir.preprocess.text_io import find_offsets

    path = tmp_path / "x.tsv"
    path.write_text("".join(f"text {i}\t1\n" for i in range(50)) + "broken row\n" + "last\t0\n")
    offsets = find_offsets(str(path), 3)
    with pytest.raises(ValueError, match=r"x.tsv: line 51 has 1 tab-separated columns"):
        read_examples(str(path), "tsv", (0,), 1, start=offsets[2], end=offsets[3])
    texts, labels = read_examples(str(path), "tsv", (0,), 1, start=offsets[0], end=offsets[1])
    assert texts[0] == "text 0" and labels[0] == "1"


class CountingHub(StubHub):
    device = "cpu"

    def __init__(self):
        self.calls = 0

    def predict_proba(self, texts, batch_size=1024):
        self.calls += 1
        return super().predict_proba(texts, batch_size)


def test_directories_are_refused_before_any_work(tmp_path):
    hub = CountingHub()
    with pytest.raises(ValueError, match="is a directory: name a file"):
        predict_file(hub, str(tmp_path), None)
    path = tmp_path / "x.txt"
    path.write_text("good\n")
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="out is a directory: name a file"):
        predict_file(hub, str(path), str(tmp_path / "out"))
    assert hub.calls == 0
    assert predict_file(hub, str(path), None)["device"] == "cpu"  # the speed says where it was measured


def test_cli_refuses_before_loading_the_model(tmp_path):
    (tmp_path / "x.txt").write_text("good\n")
    (tmp_path / "out").mkdir()
    ckpt, data_bin = tmp_path / "ckpt.pt", tmp_path / "bin"
    ckpt.write_bytes(b"not loaded: every refusal comes first")
    data_bin.mkdir()
    base = ["--checkpoint", str(ckpt), "--data-bin", str(data_bin)]
    proc = run(["distill-predict", *base, "--input", tmp_path], check=False)
    assert proc.returncode == 2 and "is a directory: name a file" in proc.stderr
    for extra, message in (
        (["--input", str(tmp_path / "x.txt"), "--output", str(tmp_path / "out")], "out is a directory"),
        (["--input", str(tmp_path / "x.txt"), "--device", "cuda:99"], "--device cuda:99"),
        (["--input", str(tmp_path / "x.txt"), "--device", "gpu"], "use auto, cpu, cuda or cuda:N"),
        (["--input", str(tmp_path / "x.txt"), "--cpu", "--device", "cuda"], "--cpu contradicts --device cuda"),
        (["--input", str(tmp_path / "x.txt"), "--checkpoint", str(data_bin)], "checkpoint .*bin is a directory"),
    ):
        with pytest.raises(ValueError, match=message):
            predict_main(base + extra)


def test_binary_mcc_matches_scikit_learn():
    from sklearn.metrics import matthews_corrcoef

    from user_dir.inference.predict import binary_mcc

    rng = np.random.default_rng(0)
    for _ in range(20):
        gold = rng.choice(["0", "1"], 50).tolist()
        pred = [g if rng.random() < 0.7 else ("1" if g == "0" else "0") for g in gold]
        assert binary_mcc(pred, gold, "1") == pytest.approx(100 * matthews_corrcoef(gold, pred))
    # one class predicted everywhere: 0, as scikit-learn
    assert binary_mcc(["1"] * 5, ["0", "1", "1", "0", "1"], "1") == 0 == matthews_corrcoef(["0", "1", "1", "0", "1"], ["1"] * 5)
