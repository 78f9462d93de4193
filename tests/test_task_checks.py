"""Bad data-bins are refused at load time, naming the file and line or row."""

import json
import shutil

import numpy as np
import pytest

from user_dir.data.teacher_targets import save_teacher_targets
from user_dir.tasks.feature_based_sentence_prediction import (
    FeatureBasedSentencePredictionConfig,
    FeatureBasedSentencePredictionTask,
)

from conftest import N_TRAIN, run


def task_for(data_bin, **kw):
    cfg = FeatureBasedSentencePredictionConfig(
        data=str(data_bin), num_classes=kw.pop("num_classes", 2), distillation_target=kw.pop("distill", True),
        classification_head_name="h", train_subset="train", seed=1, **kw)
    return FeatureBasedSentencePredictionTask.setup_task(cfg)


@pytest.fixture
def data_bin(sst2, tmp_path):
    path = tmp_path / "bin"
    shutil.copytree(sst2["data_bin"], path)
    return path


def test_good_data_bin_loads(data_bin):
    task = task_for(data_bin)
    ds = task.load_dataset("train")
    batch = ds.collater([ds[i] for i in range(4)])
    assert batch["distill_target"].shape == (4, 2) and batch["target"].shape == (4, 1)  # as fairseq's sentence_prediction
    assert task.classes == ["0", "1"] and task.ngram_settings["ngram_range"] == [1, 3]


def test_unknown_label_is_refused(data_bin, sst2, tmp_path):
    labels = (sst2["work"] / "train.label").read_text().splitlines()
    labels[6] = "positive"
    (tmp_path / "bad.label").write_text("\n".join(labels) + "\n")
    run(["fairseq-preprocess", "--only-source", "--srcdict", data_bin / "label" / "dict.txt",
         "--trainpref", tmp_path / "bad.label", "--destdir", tmp_path / "label"])
    for ext in ("bin", "idx"):
        shutil.copy(tmp_path / "label" / f"train.{ext}", data_bin / "label" / f"train.{ext}")
    with pytest.raises(ValueError, match=r"label/train: line 7 has label '<unk>', not one of \['0', '1'\]"):
        task_for(data_bin).load_dataset("train")


def test_wrong_number_of_classes(data_bin):
    with pytest.raises(ValueError, match=r"label/dict.txt lists 2 labels .* but --num-classes is 3"):
        task_for(data_bin, num_classes=3)


def test_teacher_class_order_must_match_label_dict(data_bin):
    meta = json.loads((data_bin / "distill" / "train.json").read_text())
    meta["classes"] = ["1", "0"]
    (data_bin / "distill" / "train.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="teacher's class order differs"):
        task_for(data_bin).load_dataset("train")


def test_nan_and_misaligned_logits(data_bin):
    logits = np.load(data_bin / "distill" / "train.npy")
    logits[10, 0] = np.nan
    save_teacher_targets(str(data_bin / "distill" / "train.npy"), logits, ["0", "1"])
    with pytest.raises(ValueError, match=r"train.npy: row 10 \(example 11 of .*input0/train\)"):
        task_for(data_bin).load_dataset("train")
    save_teacher_targets(str(data_bin / "distill" / "train.npy"), np.zeros((N_TRAIN + 1, 2), np.float32), ["0", "1"])
    with pytest.raises(ValueError, match=f"has {N_TRAIN + 1} rows but .*input0/train has {N_TRAIN} examples"):
        task_for(data_bin).load_dataset("train")


def test_unlabeled_transfer_data_and_missing_targets(data_bin):
    for ext in ("bin", "idx"):
        (data_bin / "label" / f"train.{ext}").unlink()
    ds = task_for(data_bin).load_dataset("train")
    assert "target" not in ds.collater([ds[0], ds[1]])
    (data_bin / "distill" / "train.npy").unlink()
    with pytest.raises(FileNotFoundError, match="distill/train.npy does not exist"):
        task_for(data_bin).load_dataset("train")
    with pytest.raises(ValueError, match="neither gold labels"):
        task_for(data_bin, distill=False).load_dataset("train")


def test_labels_are_checked_against_a_loop(data_bin):
    # the vectorized check reads the memory-mapped buffer: compare with the rows themselves
    from user_dir.tasks.student_task import _label_ids

    task = task_for(data_bin)
    ds = task._load_indexed("label", "train", task.label_dictionary, False)
    rows = np.arange(len(ds))
    loop = np.array([int(ds[i][0]) for i in rows])
    assert np.array_equal(_label_ids(ds, rows, 4, 6), (loop < 4) | (loop >= 6))
    assert not _label_ids(ds, rows, 4, 6).any() and _label_ids(ds, rows, 5, 6).any()


def test_a_checkpoints_data_bin_is_fingerprinted(data_bin, tmp_path):
    """A checkpoint loaded with a data-bin it was not trained on is refused, naming the file."""
    # what fairseq saves with the checkpoint ("task_state") and hands back when loading it
    saved = task_for(data_bin).state_dict()
    assert set(saved["data_fingerprint"]) == {"input0/dict.txt", "label/dict.txt", "input0/ngrams.json"}

    def reload(path):
        task_for(path).load_state_dict(saved)

    reload(data_bin)  # its own data-bin loads
    other = tmp_path / "other"
    # a vocabulary of the same size from another corpus (other counts, other order)
    shutil.copytree(data_bin, other)
    lines = (other / "input0" / "dict.txt").read_text().splitlines()
    (other / "input0" / "dict.txt").write_text("\n".join(lines[1:] + lines[:1]) + "\n")
    with pytest.raises(ValueError, match=r"other/input0/dict.txt is not the one this checkpoint"):
        reload(other)
    # the same classes in the other order rename the columns
    shutil.rmtree(other)
    shutil.copytree(data_bin, other)
    (other / "label" / "dict.txt").write_text("1 0\n0 0\n")
    with pytest.raises(ValueError, match=r"other/label/dict.txt is not .*class order differs"):
        reload(other)
    # another tokenizer or n-gram range changes the features of a text
    shutil.rmtree(other)
    shutil.copytree(data_bin, other)
    settings = json.loads((other / "input0" / "ngrams.json").read_text())
    settings["ngram_range"] = [1, 2]
    (other / "input0" / "ngrams.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=r"other/input0/ngrams.json is not .*n-gram range"):
        reload(other)


def test_ngram_settings_of_another_vocabulary_are_refused(data_bin):
    settings = json.loads((data_bin / "input0" / "ngrams.json").read_text())
    settings["num_features"] += 1
    (data_bin / "input0" / "ngrams.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=r"ngrams.json describes .* features but .*dict.txt has"):
        task_for(data_bin)


def test_missing_class_order_file_needs_the_flag(data_bin):
    (data_bin / "distill" / "train.json").unlink()
    with pytest.raises(ValueError, match="train.json not found"):
        task_for(data_bin).load_dataset("train")
    task_for(data_bin, classes_from_label_dict=True).load_dataset("train")
