"""distill-teacher-logits: the teacher's logits for raw text, in input order."""

import json
import os

import numpy as np
import pytest
import torch

from user_dir.teacher import Teacher, teacher_logits_file

from conftest import run


@pytest.fixture(scope="module")
def teacher(finetuned_teacher):
    return Teacher(str(finetuned_teacher["dir"]))


def test_batched_logits_equal_one_by_one(teacher, finetuned_teacher):
    texts = finetuned_teacher["texts"][:20] + ["", "a " * 600]
    batched = teacher.logits(texts, batch_tokens=512)
    with torch.inference_mode():
        single = np.stack([teacher.model(teacher.encode(t)[None], features_only=True,
                                         classification_head_name=teacher.head)[0][0].numpy() for t in texts])
    assert batched.shape == (22, 2)
    assert teacher.predict(texts) == [teacher.classes[i] for i in batched.argmax(1)]
    assert np.abs(batched - single).max() < 1e-4
    assert len(teacher.encode("a " * 600)) == teacher.max_positions  # truncated, </s> kept
    assert teacher.encode("a " * 600)[-1] == teacher.task.source_dictionary.eos()
    assert teacher.encode("good")[0] == 0  # --init-token 0 as at fine-tuning
    assert teacher.classes == ["0", "1"]


def test_pairs_follow_the_fine_tuning_layout(teacher):
    d = teacher.task.source_dictionary
    ids = teacher.encode(("good film", "bad film")).tolist()
    assert [d[i] for i in ids] == ["<s>", "good", "film", "</s>", "bad", "film", "</s>"]


def test_tool_output_rows_classes_and_workers(finetuned_teacher, teacher, tmp_path):
    texts = finetuned_teacher["texts"]
    src = tmp_path / "in.txt"
    src.write_bytes(("\ufeff" + "\n".join(texts[:30]) + "\n\n" + "\n".join(texts[30:]) + "\n").encode())
    out = tmp_path / "logits.npy"
    proc = run(["distill-teacher-logits", "--checkpoint-dir", finetuned_teacher["dir"], "--input", src,
                "--output", out])
    assert json.loads(proc.stdout.strip().splitlines()[-1])["examples"] == len(texts) + 1
    logits = np.load(out)
    expected = teacher.logits(texts[:30] + [""] + texts[30:])
    assert np.abs(logits - expected).max() < 1e-4
    assert json.loads((tmp_path / "logits.json").read_text())["classes"] == ["0", "1"]
    assert not os.path.exists(str(out) + ".shards")
    # two submitit jobs over small shards give the same rows in the same order
    result = teacher_logits_file(str(finetuned_teacher["dir"]), str(src), str(tmp_path / "par.npy"),
                                 workers=2, shard_bytes=1500)
    assert result["examples"] == len(texts) + 1
    assert np.abs(np.load(tmp_path / "par.npy") - logits).max() < 1e-4


def test_resume_skips_finished_shards(finetuned_teacher, tmp_path):
    from user_dir.data.text_io import find_offsets, prepare_work_dir

    src = tmp_path / "in.txt"
    src.write_text("\n".join(finetuned_teacher["texts"]) + "\n")
    out = str(tmp_path / "logits.npy")
    ckpt = finetuned_teacher["dir"] / "checkpoint_best.pt"
    offsets = find_offsets(str(src), max(1, os.path.getsize(src) // 1000 + 1))
    work = out + ".shards"
    prepare_work_dir(work, {
        "input": os.path.abspath(src), "size": os.path.getsize(src), "mtime": os.path.getmtime(src),
        "checkpoint": os.path.abspath(ckpt), "checkpoint_mtime": os.path.getmtime(ckpt),
        "format": "text", "columns": [0], "header": False, "offsets": offsets,
    })
    first_rows = len(open(src, "rb").read()[offsets[0]:offsets[1]].splitlines())
    np.save(os.path.join(work, "shard-00000.npy"), np.full((first_rows, 2), 7.0, np.float32))  # a killed run's
    teacher_logits_file(str(finetuned_teacher["dir"]), str(src), out, shard_bytes=1000)
    logits = np.load(out)
    assert (logits[:first_rows] == 7.0).all() and not (logits[first_rows:] == 7.0).any()
    assert len(logits) == len(finetuned_teacher["texts"])


def test_refusals(finetuned_teacher, tmp_path):
    proc = run(["distill-teacher-logits", "--checkpoint-dir", tmp_path, "--input", tmp_path / "x",
                "--output", tmp_path / "o.npy"], check=False)
    assert proc.returncode == 2 and "input file not found" in proc.stderr
    (tmp_path / "x").write_text("good\n")
    proc = run(["distill-teacher-logits", "--checkpoint-dir", tmp_path, "--input", tmp_path / "x",
                "--output", tmp_path / "o.npy"], check=False)
    assert proc.returncode == 2 and "teacher checkpoint not found" in proc.stderr and "checkpoint_best.pt" in proc.stderr
    (tmp_path / "x.tsv").write_text("only one column\n")
    proc = run(["distill-teacher-logits", "--checkpoint-dir", finetuned_teacher["dir"], "--input",
                tmp_path / "x.tsv", "--input-format", "tsv", "--text-column", "1", "--output",
                tmp_path / "o.npy"], check=False)
    assert proc.returncode == 2 and "x.tsv: line 1 has 1" in proc.stderr and "column 1" in proc.stderr


def test_slurm_without_slurm_is_a_clear_error(finetuned_teacher, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("good\nbad\n")
    proc = run(["distill-teacher-logits", "--checkpoint-dir", finetuned_teacher["dir"], "--input", src,
                "--output", tmp_path / "o.npy", "--workers", "2", "--cluster", "slurm"], check=False)
    assert proc.returncode == 2 and "--cluster slurm" in proc.stderr and "srun" in proc.stderr
