"""distill-teacher-logits: the teacher's logits for raw text, in input order."""

import json
import logging
import os
import random
import subprocess
import time

import numpy as np
import pytest
import torch

from user_dir.fileio import WorkDirLocked, locked
from user_dir.inference.devices import resolve_device
from user_dir.inference.teacher import Teacher, length_batches
from user_dir.preprocess.teacher_logits import job_devices, split_jobs, teacher_logits_file

from conftest import BIN, read_tsv, run


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


def test_batch_encoding_equals_the_token_strings_through_the_dictionary(teacher, finetuned_teacher, monkeypatch):
    """encode_all's ids (the fast tokenizer's ids mapped by a table) against the WordPiece strings
    read by fairseq's dictionary, text by text: BOM, <br />, emoji, rare scripts, empty, pairs."""
    from user_dir.encoders import wordpiece

    monkeypatch.setattr(wordpiece, "_ENCODE_CHUNK", 5)  # chunk boundaries inside the batch
    d = teacher.task.source_dictionary
    texts = finetuned_teacher["texts"] + ["", "\ufeffcafé <br />naïve 😀 \u200b x", "zzqxj ünïcödé 漢字 [MASK]",
                                          "a " * 600, ("good film", "bad film"), ("", "x")]

    def by_strings(text):
        ids = []
        for i, side in enumerate([text] if isinstance(text, str) else text):
            ids += [teacher.cfg.task.init_token if i == 0 else teacher.cfg.task.separator_token]
            ids += d.encode_line(teacher.bpe.encode(side), append_eos=True, add_if_not_exist=False).tolist()
        return [i for i in ids if i is not None]

    tokens, cut = teacher.encode_all(texts)
    assert cut == 1
    for text, ids in zip(texts, tokens):
        assert ids.dtype == torch.int64
        expected = by_strings(text)
        if len(expected) > teacher.max_positions:
            expected = expected[:teacher.max_positions - 1] + expected[-1:]
        assert ids.tolist() == expected, text
    assert [teacher.encode(t).tolist() for t in texts] == [t.tolist() for t in tokens]


def test_local_jobs_see_the_gpus_this_process_sees(tmp_path, monkeypatch):
    """submitit gives a local job CUDA_VISIBLE_DEVICES="" unless it is given GPUs: a GPU run found
    no device in its jobs. Each job reports its own environment here."""
    from tqdm import tqdm

    from user_dir.preprocess.teacher_logits import _run_jobs

    def env_of_jobs(devices):
        return _run_jobs(str(tmp_path / "w"), "local", None, 1, devices, lambda j: ("CUDA_VISIBLE_DEVICES",),
                         tqdm(disable=True), [], fn=os.getenv)

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert env_of_jobs(["cuda:0", "cuda:1"]) == ["3,1", "3,1"]  # the same GPUs, in the same order
    assert env_of_jobs(["cpu", "cpu"]) == ["", ""]  # CPU jobs need none
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f2c")
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES=GPU-8f2c.*--workers 1"):
        env_of_jobs(["cuda:0", "cuda:0"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    expected = ",".join(map(str, range(torch.cuda.device_count())))  # all of them ("" without a GPU)
    assert env_of_jobs(["cuda:0", "cuda:0"]) == [expected, expected]


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
    # two submitit jobs over small shards give the same rows in the same order, and with the same
    # shards and threads the very same floats as one worker: the shards do not depend on --workers
    result = teacher_logits_file(str(finetuned_teacher["dir"]), str(src), str(tmp_path / "par.npy"),
                                 workers=2, shard_bytes=1500, threads=1, device="cpu")
    assert result["examples"] == len(texts) + 1
    assert result["shards"] > 2 and result["jobs"] == 2  # one job per worker, not one per shard
    assert np.abs(np.load(tmp_path / "par.npy") - logits).max() < 1e-4
    one = teacher_logits_file(str(finetuned_teacher["dir"]), str(src), str(tmp_path / "one.npy"),
                              shard_bytes=1500, threads=1, device="cpu")
    assert one["shards"] == result["shards"] and one["jobs"] == 1
    assert np.load(tmp_path / "one.npy").tobytes() == np.load(tmp_path / "par.npy").tobytes()


class InlineExecutor:
    """Stands in for submitit's: records each job's arguments, runs it here on the CPU."""

    submitted = []
    params = {}

    def __init__(self, folder, cluster="local"):
        pass

    def update_parameters(self, **params):
        InlineExecutor.params = params

    def submit(self, fn, *args):
        InlineExecutor.submitted.append(args)
        return InlineJob(fn(*args[:2], "cpu", *args[3:]))


class InlineJob:
    def __init__(self, result):
        self._result = result

    def done(self):
        return True

    def result(self):
        return self._result

    def cancel(self, check=True):
        pass


def test_one_job_per_worker_over_contiguous_shards(finetuned_teacher, tmp_path, monkeypatch):
    import submitit

    import user_dir.preprocess.teacher_logits as module

    loads = []

    class CountingTeacher(Teacher):
        def __init__(self, *args, **kwargs):
            loads.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(module, "Teacher", CountingTeacher)
    monkeypatch.setattr(submitit, "LocalExecutor", InlineExecutor)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # two GPUs visible: one per job
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    InlineExecutor.submitted = []
    src = tmp_path / "in.txt"
    src.write_text("\n".join(finetuned_teacher["texts"]) + "\n")
    threads = torch.get_num_threads()
    result = teacher_logits_file(str(finetuned_teacher["dir"]), str(src), str(tmp_path / "o.npy"), workers=2,
                                 shard_bytes=800, device="auto")
    jobs = InlineExecutor.submitted
    assert result["shards"] > 4 and result["jobs"] == 2 and len(jobs) == 2
    assert [job[2] for job in jobs] == ["cuda:0", "cuda:1"]
    assert InlineExecutor.params["visible_gpus"] == [0, 1]  # each job sees both, as this process
    shards = [os.path.basename(shard[2]) for job in jobs for shard in job[9]]  # score_shards' shard list
    assert shards == [f"shard-{i:05d}.npy" for i in range(result["shards"])]  # contiguous ranges, each once
    assert len(loads) == 2  # the teacher once per job
    assert torch.get_num_threads() == threads  # a job run in-process gives the threads back
    assert np.load(tmp_path / "o.npy").shape == (len(finetuned_teacher["texts"]), 2)


def test_job_devices_and_ranges():
    assert job_devices("auto", 3, "local", 2) == ["cuda:0", "cuda:1", "cuda:0"]
    assert job_devices("cuda", 2, "local", 1) == ["cuda:0", "cuda:0"]
    assert job_devices("auto", 2, "local", 0) == ["auto", "auto"]  # no GPU: each job on the CPU
    assert job_devices("cpu", 2, "local", 2) == ["cpu", "cpu"]
    assert job_devices("cuda:1", 2, "local", 2) == ["cuda:1", "cuda:1"]
    assert job_devices("auto", 2, "slurm", 2) == ["auto", "auto"]  # each SLURM job has its own GPUs
    assert split_jobs(list(range(7)), 2) == [[0, 1, 2], [3, 4, 5, 6]]
    assert split_jobs([1, 5], 4) == [[1], [5]] and split_jobs([], 3) == []
    # padded size longest x count within 8; the 9 alone
    assert [b.tolist() for b in length_batches([5, 2, 9, 2, 3], 8)] == [[1, 3], [4], [0], [2]]


def test_pad_right_is_fairseqs_collate_tokens():
    from fairseq.data import data_utils

    from user_dir.inference.teacher import pad_right

    g = torch.Generator().manual_seed(0)
    for trial in range(30):
        lengths = torch.randint(0, 30, (int(torch.randint(1, 40, (1,), generator=g)),), generator=g)
        tokens = [torch.randint(4, 100, (int(n),), generator=g) for n in lengths]
        if trial % 3 == 0:  # mixed integer types are cast to the first one's, as fairseq does
            tokens = [t.int() if i % 2 else t for i, t in enumerate(tokens)]
        assert torch.equal(pad_right(tokens, 1), data_utils.collate_tokens(tokens, 1))
    empty = [torch.zeros(0, dtype=torch.long)] * 3
    assert torch.equal(pad_right(empty, 1), data_utils.collate_tokens(empty, 1))


def test_devices(teacher, finetuned_teacher, tmp_path):
    assert Teacher(str(finetuned_teacher["dir"]), device="cpu").device == "cpu"
    assert teacher.device == resolve_device("auto")
    for bad, message in (("gpu", "use auto, cpu, cuda or cuda:N"), ("cuda:99", "--device cuda:99")):
        with pytest.raises(ValueError, match=message):
            Teacher(str(finetuned_teacher["dir"]), device=bad)
    src = tmp_path / "in.txt"
    src.write_text("good\nbad\n")
    result = teacher_logits_file(str(finetuned_teacher["dir"]), str(src), str(tmp_path / "o.npy"), device="cpu")
    assert result["devices"] == ["cpu"]
    with pytest.raises(ValueError, match="--device cuda:99"):
        teacher_logits_file(str(finetuned_teacher["dir"]), str(src), str(tmp_path / "p.npy"), device="cuda:99")
    assert not os.path.exists(tmp_path / "p.npy.shards")


def test_truncated_rows_are_counted(finetuned_teacher, teacher, tmp_path, caplog):
    src = tmp_path / "in.txt"
    src.write_text("good\n" + "a " * 600 + "\nbad\n" + "b " * 700 + "\n")
    with caplog.at_level(logging.INFO, logger="user_dir.preprocess.teacher_logits"):
        result = teacher_logits_file(str(finetuned_teacher["dir"]), str(src), str(tmp_path / "o.npy"))
    assert result["truncated"] == 2 and result["examples"] == 4
    assert f"2 truncated to the teacher's {teacher.max_positions} positions" in caplog.text


def test_a_second_run_on_the_same_output_is_refused(finetuned_teacher, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("good\nbad\n")
    out = str(tmp_path / "o.npy")
    with locked(out + ".shards"):  # another run holds it
        (tmp_path / "o.npy.shards" / "shard-00000.npy").write_bytes(b"theirs")
        with pytest.raises(WorkDirLocked, match=f"in use by process {os.getpid()}"):
            teacher_logits_file(str(finetuned_teacher["dir"]), str(src), out)
        assert (tmp_path / "o.npy.shards" / "shard-00000.npy").read_bytes() == b"theirs"
    assert not os.path.exists(out)


def test_kill_9_then_resume_gives_the_uninterrupted_array(finetuned_teacher, glue, tmp_path):
    texts = [r[0] for r in read_tsv(glue / "SST-2" / "dev.tsv")[:300]]
    src = tmp_path / "in.txt"
    src.write_text("".join(t + "\n" for t in texts))
    ref = tmp_path / "ref" / "ref.npy"
    timing = teacher_logits_file(str(finetuned_teacher["dir"]), str(src), str(ref), shard_bytes=1500, threads=1,
                                 device="cpu")
    per_shard = timing["seconds"] / timing["shards"]
    out = tmp_path / "out" / "logits.npy"
    work = tmp_path / "out" / "logits.npy.shards"
    cmd = [str(BIN / "distill-teacher-logits"), "--checkpoint-dir", str(finetuned_teacher["dir"]),
           "--input", str(src), "--output", str(out), "--shard-bytes", "1500", "--threads", "1", "--device", "cpu"]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    rng, done, pid = random.Random(7), 0, None
    for _ in range(3):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and len(list(work.glob("shard-*.npy"))) <= done and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 1.5 * per_shard))  # some way into one of the next shards
        proc.kill()  # SIGKILL
        proc.wait()
        assert proc.returncode == -9, "finished before the kill: use more lines or smaller shards"
        done, pid = len(list(work.glob("shard-*.npy"))), proc.pid
    assert done > 0
    # what a kill during the final save leaves beside the output
    (out.parent / f".logits.npy.{pid}.0badc0de.tmp.npy").write_bytes(b"partial")
    (out.parent / f".logits.json.{pid}.x7k2m9q1.tmp").write_text("{")
    result = json.loads(run(cmd).stdout.strip().splitlines()[-1])
    assert result["examples"] == len(texts) and 0 < result["computed"] < len(texts)
    assert np.load(out).dtype == np.float32 and np.load(out).tobytes() == np.load(ref).tobytes()
    assert sorted(os.listdir(out.parent)) == ["logits.json", "logits.npy"]


def test_resume_skips_finished_shards(finetuned_teacher, tmp_path):
    from user_dir.fileio import prepare_work_dir
    from user_dir.preprocess.text_io import find_offsets

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
        "max_positions": None, "keep_head": None,
    })
    first_rows = len(open(src, "rb").read()[offsets[0]:offsets[1]].splitlines())
    np.save(os.path.join(work, "shard-00000.npy"), np.full((first_rows, 2), 7.0, np.float32))  # a killed run's
    result = teacher_logits_file(str(finetuned_teacher["dir"]), str(src), out, shard_bytes=1000)
    logits = np.load(out)
    assert (logits[:first_rows] == 7.0).all() and not (logits[first_rows:] == 7.0).any()
    assert len(logits) == len(finetuned_teacher["texts"])
    # the speed counts only the rows computed in this run
    assert result["examples"] == len(logits) and result["computed"] == len(logits) - first_rows
    assert result["examples_per_second"] == pytest.approx(result["computed"] / result["seconds"], rel=0.05)


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
    # directories are refused before any work, not at the final rename
    (tmp_path / "out.npy").mkdir()
    with pytest.raises(ValueError, match="out.npy is a directory"):
        teacher_logits_file(str(finetuned_teacher["dir"]), str(tmp_path / "x"), str(tmp_path / "out.npy"))
    assert not os.path.exists(tmp_path / "out.npy.shards")
    with pytest.raises(ValueError, match="is a directory"):
        teacher_logits_file(str(finetuned_teacher["dir"]), str(tmp_path), str(tmp_path / "o.npy"))
    (tmp_path / "o.json").mkdir()
    with pytest.raises(ValueError, match="o.json is a directory"):
        teacher_logits_file(str(finetuned_teacher["dir"]), str(tmp_path / "x"), str(tmp_path / "o.npy"))


def test_slurm_without_slurm_is_a_clear_error(finetuned_teacher, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("good\nbad\n")
    proc = run(["distill-teacher-logits", "--checkpoint-dir", finetuned_teacher["dir"], "--input", src,
                "--output", tmp_path / "o.npy", "--workers", "2", "--cluster", "slurm"], check=False)
    assert proc.returncode == 2 and "--cluster slurm" in proc.stderr and "srun" in proc.stderr
