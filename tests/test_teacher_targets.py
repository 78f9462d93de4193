import json

import numpy as np
import pytest
import torch

from user_dir.data.teacher_targets import TeacherTargetDataset, load_teacher_targets, save_teacher_targets


def make(tmp_path, array, classes=("0", "1")):
    path = str(tmp_path / "train.npy")
    save_teacher_targets(path, array, classes)
    return path


def test_round_trip_float32_and_float16(tmp_path):
    logits = np.random.default_rng(0).normal(size=(10, 2)).astype(np.float16)
    path = make(tmp_path, logits)
    array = load_teacher_targets(path, 10, 2, ["0", "1"])
    assert array.dtype == np.float16 and isinstance(array, np.memmap)
    ds = TeacherTargetDataset(array)
    batch = ds.collater([ds[3], ds[7]])
    assert batch.dtype == torch.float32 and batch.shape == (2, 2)
    assert torch.equal(batch[1], torch.from_numpy(logits[7].astype(np.float32)))
    assert json.load(open(tmp_path / "train.json"))["classes"] == ["0", "1"]


def test_refuses_misaligned_rows(tmp_path):
    path = make(tmp_path, np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match=r"train.npy has 10 rows but data/input0/train has 11 examples"):
        load_teacher_targets(path, 11, 2, rows_from="data/input0/train")


def test_refuses_wrong_number_of_classes(tmp_path):
    path = make(tmp_path, np.zeros((4, 3), np.float32), classes=("a", "b", "c"))
    with pytest.raises(ValueError, match="train.npy has 3 classes per row but --num-classes is 2"):
        load_teacher_targets(path, 4, 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_refuses_non_finite(tmp_path, bad):
    logits = np.zeros((6, 2), np.float32)
    logits[4, 1] = bad
    path = make(tmp_path, logits)
    with pytest.raises(ValueError, match=r"train.npy: row 4 \(example 5 of .*\).*NaN or inf"):
        load_teacher_targets(path, 6, 2)


def test_refuses_other_dtypes_and_shapes(tmp_path):
    path = str(tmp_path / "x.npy")
    np.save(path, np.zeros((3, 2), np.int64))
    with pytest.raises(ValueError, match="dtype int64"):
        load_teacher_targets(path, 3, 2)
    np.save(path, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="2-D"):
        load_teacher_targets(path, 3, 2)
    open(path, "wb").write(b"not numpy")
    with pytest.raises(ValueError, match="not a readable .npy"):
        load_teacher_targets(path, 3, 2)


def test_refuses_other_class_order(tmp_path, caplog):
    path = make(tmp_path, np.zeros((3, 2), np.float32), classes=("1", "0"))
    with pytest.raises(ValueError, match=r"train.json says the columns .* are classes \['1', '0'\]"):
        load_teacher_targets(path, 3, 2, ["0", "1"])
    (tmp_path / "train.json").unlink()
    # without the class-order file the columns could be swapped: refused unless the user says so
    with pytest.raises(ValueError, match=r"train.json not found: .*--classes-from-label-dict"):
        load_teacher_targets(path, 3, 2, ["0", "1"])
    load_teacher_targets(path, 3, 2, ["0", "1"], require_class_order=False)
    assert "taking the columns of" in caplog.text


@pytest.mark.parametrize("recorded", ['{"classes": null}', '["0", "1"]', '{"classes": [["0"], "1"]}', "{"])
def test_refuses_a_malformed_class_order_file(tmp_path, recorded):
    path = make(tmp_path, np.zeros((3, 2), np.float32))
    (tmp_path / "train.json").write_text(recorded)
    with pytest.raises(ValueError, match="train.json: not a class-order file"):
        load_teacher_targets(path, 3, 2, ["0", "1"])


def test_refuses_absurd_logits(tmp_path):
    # finite, but softmax of them overflows: loss nan without a word before
    path = make(tmp_path, np.array([[0.5, -0.5], [3e38, -3e38], [1.0, 2.0]], np.float32))
    with pytest.raises(ValueError, match=r"row 1 \(example 2 of .*absurd"):
        load_teacher_targets(path, 3, 2, ["0", "1"])
