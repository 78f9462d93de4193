"""Runs other than one fp32 process: distributed training, gradient accumulation, half precision."""

import os
import re
import shutil
import socket
import subprocess

import numpy as np
import pytest
import torch

from conftest import BIN, REPO, TRAIN_FLAGS, run


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distributed(data_bin, flags, save_dir, world=2, check=True):
    """fairseq-train in ``world`` CPU processes (gloo, fairseq's legacy DDP: pytorch's DDP wants
    device ids), one per rank, as a launcher starts them; rank 0's output."""
    port = free_port()
    # one thread per rank: two ranks of two OpenMP threads on two cores spin-wait each other
    # into a hundredfold slowdown
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(
        [str(BIN / "fairseq-train"), str(data_bin), *map(str, flags), "--save-dir", str(save_dir),
         "--cpu", "--distributed-backend", "gloo", "--distributed-world-size", str(world),
         "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-rank", str(rank),
         "--distributed-no-spawn", "--ddp-backend", "legacy_ddp"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for rank in range(world)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert (p.returncode == 0) == check, f"rank {rank} exited with {p.returncode}:\n{out[-4000:]}"
    return outs[0]


def updates_per_epoch(log):
    return [int(n) for n in re.findall(r"valid on 'valid' subset .*?num_updates (\d+)", log)]


def test_dan_trains_on_two_processes(sst2, tmp_path):
    flags = [*TRAIN_FLAGS, "--max-epoch", "2", "--no-epoch-checkpoints"]
    log = distributed(sst2["data_bin"], flags, tmp_path / "ckpt")
    # each rank takes half of every update's batches: half the updates of one process
    n_batches = -(-6000 // 32)
    assert updates_per_epoch(log) == [-(-n_batches // 2), 2 * -(-n_batches // 2)]
    assert "the embedding table gets dense gradients (no sparse all-reduce)" in log
    acc = [float(a) for a in re.findall(r"valid on 'valid' subset .*?accuracy ([\d.]+)", log)]
    assert acc[-1] > 70, acc  # one process gets 76-78 here; the majority class is 50.9
    state = torch.load(tmp_path / "ckpt" / "checkpoint_best.pt", map_location="cpu", weights_only=False)
    assert not state["model"]["encoder.embed_tokens.weight"].is_sparse


def test_sparse_table_is_refused_in_distributed_runs(sst2, tmp_path):
    log = distributed(sst2["data_bin"], [*TRAIN_FLAGS, "--sparse-embedding", "yes", "--max-epoch", "1"],
                      tmp_path, check=False)
    assert "--sparse-embedding yes with --distributed-world-size 2: distributed training all-reduces " \
           "dense gradients only" in log


def test_bilstm_trains_on_two_processes(glue, imported_teacher, tmp_path):
    from conftest import read_tsv, wordpiece_data_bin

    rows = {"train": read_tsv(glue / "SST-2" / "train.tsv")[:640], "dev": read_tsv(glue / "SST-2" / "dev.tsv")[:64]}
    data = wordpiece_data_bin(tmp_path, imported_teacher, rows)
    flags = ["--user-dir", REPO / "user_dir", "--task", "glue_distillation", "--num-classes", "2",
             "--arch", "bilstm_classifier", "--encoder-embed-dim", "32", "--lstm-hidden-size", "16",
             "--hidden-dim", "16", "--criterion", "distillation", "--optimizer", "mixed_adam", "--lr", "3e-3",
             "--batch-size", "32", "--max-epoch", "1", "--log-format", "simple", "--no-epoch-checkpoints",
             "--bpe", "wordpiece", "--wordpiece-vocab", imported_teacher / "tokenizer.json"]
    log = distributed(data, flags, tmp_path / "ckpt")
    assert updates_per_epoch(log) == [10]  # 640 examples, 32 per batch, two ranks
    assert (tmp_path / "ckpt" / "checkpoint_best.pt").exists()


def test_update_freq_with_sparse_gradients_equals_the_doubled_batch(sst2, tmp_path):
    """--update-freq 2 accumulates two batches' sparse gradients: one update equals the update of
    one batch twice the size (32 examples, so both runs see the same ones)."""
    data = tmp_path / "bin"
    shutil.copytree(sst2["data_bin"], data)
    work = sst2["work"]
    small = tmp_path / "small"
    small.mkdir()
    (small / "train.ng").write_text("".join((work / "train.ng").read_text().splitlines(True)[:32]))
    (small / "train.label").write_text("".join((work / "train.label").read_text().splitlines(True)[:32]))
    for key, src in (("input0", small / "train.ng"), ("label", small / "train.label")):
        out = tmp_path / f"pp-{key}"
        run(["fairseq-preprocess", "--only-source", "--srcdict", data / key / "dict.txt",
             "--trainpref", src, "--destdir", out])
        for ext in ("bin", "idx"):
            shutil.copy(out / f"train.{ext}", data / key / f"train.{ext}")
    from user_dir.data.teacher_targets import save_teacher_targets

    logits = np.load(data / "distill" / "train.npy")[:32]
    save_teacher_targets(str(data / "distill" / "train.npy"), logits, ["0", "1"])

    def one_update(name, *flags):
        run(["fairseq-train", data, *TRAIN_FLAGS, "--max-update", "1", "--feature-dropout", "0",
             "--pooler-dropout", "0", "--clip-norm", "1.0", "--save-dir", tmp_path / name,
             "--no-epoch-checkpoints", "--disable-validation", *flags])
        return torch.load(tmp_path / name / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]

    doubled = one_update("b32", "--batch-size", "32")
    accumulated = one_update("b16x2", "--batch-size", "16", "--update-freq", "2")
    for k in doubled:
        assert torch.allclose(doubled[k], accumulated[k], atol=1e-6), k
    # the update did happen: another lr gives another table
    other = one_update("b32-lr", "--batch-size", "32", "--lr", "1e-2")
    assert not torch.allclose(other["encoder.embed_tokens.weight"], doubled["encoder.embed_tokens.weight"])


@pytest.mark.parametrize("flag", ["--fp16", "--bf16", "--memory-efficient-fp16"])
def test_half_precision_is_refused_in_one_line(sst2, tmp_path, flag):
    proc = run(["fairseq-train", sst2["data_bin"], *TRAIN_FLAGS, flag, "--max-epoch", "1",
                "--save-dir", tmp_path], check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    if torch.cuda.is_available():
        assert f"{flag} cannot train a sparse embedding table" in out
        assert "--sparse-embedding no" in out
    else:
        assert f"{flag} needs a CUDA GPU and this run has none: drop {flag} to train in fp32" in out


def test_half_precision_with_a_sparse_table_is_refused_at_model_building():
    from types import SimpleNamespace

    from user_dir.models.classifier import use_sparse_embedding

    for flag, name in (("--fp16", "fp16"), ("--bf16", "bf16"), ("--memory-efficient-fp16", "memory_efficient_fp16")):
        cfg = SimpleNamespace(sparse_embedding="auto", optimizer_name="mixed_adam", fp16=False, bf16=False,
                              memory_efficient_fp16=False, distributed_world_size=1)
        setattr(cfg, name, True)
        with pytest.raises(ValueError, match=f"{flag} cannot train a sparse embedding table.*--sparse-embedding no"):
            use_sparse_embedding(cfg)
        cfg.sparse_embedding = "no"
        assert use_sparse_embedding(cfg) is False
    cfg = SimpleNamespace(sparse_embedding="auto", optimizer_name="mixed_adam", fp16=False, bf16=False,
                          memory_efficient_fp16=False, distributed_world_size=2)
    assert use_sparse_embedding(cfg) is False
