"""Teacher logits for every line of a file: the labelling job behind distill-teacher-logits.

The input is cut into line-aligned shards of about ``shard_bytes``; the
shards depend on the input only, so each shard's length-sorted batches, and
hence its logits, are the same whatever the number of workers.  Each job
(in-process for one worker; submitit local processes or SLURM jobs for
more) loads the teacher once and computes a contiguous range of shards,
saving each one atomically as it finishes: a kill loses at most the shard in
flight, and a rerun skips finished shards.  The work directory is held by
one run at a time.  The output appears atomically, its class-order ``.json``
first and the ``.npy`` (the file a rerun trusts) last.
"""

import contextlib
import json
import logging
import os
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..data.teacher_targets import class_order_path, save_teacher_targets
from ..fileio import (atomic_file, atomic_output, check_input_file, check_output_path, locked,
                      prepare_work_dir, remove_stale_temps, remove_work_dir)
from ..inference.devices import check_device, resolve_device
from ..inference.teacher import Teacher
from .examples import read_examples
from .text_io import find_offsets

logger = logging.getLogger(__name__)


def score_shards(checkpoint_dir: str, checkpoint_file: str, device: str, threads: int, path: str,
                 fmt: str, text_columns: Sequence[int], header: bool, batch_tokens: int,
                 shards: Sequence[Tuple[int, int, str]], max_positions: Optional[int] = None,
                 keep_head: Optional[int] = None) -> dict:
    """One job: load the teacher once, then compute and save each shard ``(start, end, npy)`` in
    turn (its row count first, the .npy last, each atomically).  Returns the rows computed,
    how many of them were truncated, the teacher's classes and the device."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        teacher = Teacher(checkpoint_dir, checkpoint_file, device, max_positions, keep_head)
        rows = truncated = 0
        for start, end, shard_path in shards:
            texts, _ = read_examples(path, fmt, text_columns, None, header and start == 0, start, end)
            tokens, cut = teacher.encode_all(texts)
            logits = teacher.logits_of_tokens(tokens, batch_tokens)
            with atomic_output(_record_path(shard_path)) as f:
                json.dump({"rows": len(texts), "truncated": cut}, f)
            with atomic_file(shard_path) as tmp:
                np.save(tmp, logits)
            rows += len(texts)
            truncated += cut
    finally:
        torch.set_num_threads(before)  # in-process: the caller's setting back
    return {"rows": rows, "truncated": truncated, "classes": list(teacher.classes),
            "device": teacher.device, "threads": threads or before, "max_positions": teacher.max_positions}


def _record_path(shard_path: str) -> str:
    return os.path.splitext(shard_path)[0] + ".json"


def split_jobs(todo: Sequence[int], workers: int) -> List[List[int]]:
    """``todo`` cut into at most ``workers`` contiguous runs of near-equal length."""
    n = min(max(workers, 1), len(todo))
    return [list(todo[len(todo) * j // n:len(todo) * (j + 1) // n]) for j in range(n)]


def job_devices(device: str, jobs: int, cluster: str, num_gpus: int) -> List[str]:
    """The device of each job: local jobs spread over the visible GPUs (job j on cuda:{j % n})
    when ``device`` is auto or cuda; otherwise every job gets ``device`` (on SLURM each job
    has its own allocation, resolved where it runs)."""
    if cluster == "local" and device in ("auto", "cuda") and num_gpus > 0:
        return [f"cuda:{j % num_gpus}" for j in range(jobs)]
    return [device] * jobs


def teacher_logits_file(checkpoint_dir: str, input_path: str, output_path: str, fmt: str = "text",
                        text_columns: Sequence[int] = (0,), header: bool = False,
                        checkpoint_file: str = "checkpoint_best.pt", batch_tokens: int = 8192,
                        workers: int = 1, cluster: str = "local", slurm_partition: Optional[str] = None,
                        shard_bytes: int = 8 << 20, device: str = "auto", threads: int = 0,
                        max_positions: Optional[int] = None, keep_head: Optional[int] = None) -> dict:
    """Write ``output_path`` (.npy [N, C]) and its class-order .json for every example of the input.

    ``workers`` jobs (submitit: local processes, or SLURM jobs with
    ``cluster="slurm"``) each take a contiguous range of the shards still to
    do; a file of fewer shards than workers uses fewer jobs.  ``device``:
    auto (CUDA when available), cpu, cuda or cuda:N.  ``threads``: CPU
    threads per job (0: torch's default in-process, the cores divided among
    the jobs for ``workers`` > 1).  ``max_positions`` / ``keep_head``: the
    teacher's window, as ``Teacher`` takes them (the fine-tuning data's cut).

    The logits depend on the input, ``shard_bytes``, ``batch_tokens``, the
    device and, on CPU, the thread count (the kernels' reductions split
    differently: about 1e-7 apart), never on ``workers`` itself: equal
    threads give bit-identical arrays for any number of workers.

    Returns the rows of the output (``examples``), the rows computed in this
    run and their speed (a resumed run does not count the rows it found
    done), and how many rows were truncated to the teacher's positions.
    """
    from tqdm import tqdm

    check_input_file(input_path)
    if not output_path.endswith(".npy"):
        raise ValueError(f"--output must end with .npy: {output_path}")
    check_output_path(output_path)  # refused now, not at the final rename
    check_output_path(class_order_path(output_path))
    work = output_path + ".shards"
    if os.path.exists(work) and not os.path.isdir(work):
        raise ValueError(f"{work} (the work directory of --output {output_path}) is not a directory")
    if cluster not in ("local", "slurm"):
        raise ValueError(f"--cluster must be local or slurm, got {cluster!r}")
    if shard_bytes < 1:
        raise ValueError(f"--shard-bytes must be positive, got {shard_bytes}")
    if threads < 0:
        raise ValueError(f"--threads must be 0 (the default) or more, got {threads}")
    check_device(device)
    if workers <= 1 or cluster == "local":
        resolve_device(device)  # a missing GPU is refused here, not in every job
    ckpt = os.path.join(checkpoint_dir, checkpoint_file)
    check_input_file(ckpt, "teacher checkpoint")
    size = os.path.getsize(input_path)
    offsets = find_offsets(input_path, size // shard_bytes + 1)  # the input alone decides the shards
    with locked(work, "teacher-logits work directory"):
        prepare_work_dir(work, {
            "input": os.path.abspath(input_path), "size": size, "mtime": os.path.getmtime(input_path),
            "checkpoint": os.path.abspath(ckpt), "checkpoint_mtime": os.path.getmtime(ckpt),
            "format": fmt, "columns": list(text_columns), "header": header, "offsets": offsets,
            "max_positions": max_positions, "keep_head": keep_head,
        })
        remove_stale_temps(os.path.dirname(os.path.abspath(output_path)),
                           [os.path.basename(output_path), os.path.basename(class_order_path(output_path))])
        shards = [os.path.join(work, f"shard-{i:05d}.npy") for i in range(len(offsets) - 1)]
        todo = [i for i, s in enumerate(shards) if not os.path.exists(s)]
        if len(todo) < len(shards):
            logger.info("resuming: %d of %d shards already done", len(shards) - len(todo), len(shards))
        groups = split_jobs(todo, workers)
        if not threads and workers > 1:
            threads = max(1, (os.cpu_count() or 1) // workers)
        devices = job_devices(device, len(groups), cluster,
                              torch.cuda.device_count() if workers > 1 and cluster == "local" else 0)

        def job_args(j):
            return (checkpoint_dir, checkpoint_file, devices[j], threads, input_path,
                    fmt, list(text_columns), header, batch_tokens,
                    [(offsets[i], offsets[i + 1], shards[i]) for i in groups[j]], max_positions, keep_head)

        start = time.perf_counter()
        bar = tqdm(total=len(shards), initial=len(shards) - len(todo), unit="shard", desc="teacher logits",
                   disable=None)
        if workers <= 1:
            results = [score_shards(*job_args(0))] if groups else []
        else:
            results = _run_jobs(work, cluster, slurm_partition, threads, devices, job_args, bar, shards) \
                if groups else []
        bar.n = len(shards)
        bar.close()
        seconds = time.perf_counter() - start
        logits = np.concatenate([np.load(s) for s in shards]) if shards else np.zeros((0, 0), np.float32)
        classes = results[0]["classes"] if results else _classes_of(checkpoint_dir, checkpoint_file)
        save_teacher_targets(output_path, logits.reshape(-1, len(classes)), classes,
                             teacher=os.path.abspath(ckpt), input=os.path.abspath(input_path))
        truncated, unrecorded = _truncated_rows(shards)
        remove_work_dir(work)
    n, computed = len(logits), sum(r["rows"] for r in results)
    speed = computed / max(seconds, 1e-9)
    used = sorted({r["device"] for r in results})
    positions = f" {results[0]['max_positions']}" if results else ""
    logger.info("%d rows of teacher logits -> %s; %d computed in this run (%.1f examples/s%s); "
                "%d truncated to the teacher's%s positions%s", n, output_path, computed, speed,
                f" on {', '.join(used)}" if used else "", truncated, positions,
                f" (not counted: {unrecorded} shards of an older run)" if unrecorded else "")
    return {"examples": n, "computed": computed, "seconds": round(seconds, 2),
            "examples_per_second": round(speed, 1), "truncated": truncated, "shards": len(shards),
            "jobs": len(results), "devices": used, "threads": sorted({r["threads"] for r in results})}


def visible_gpu_indices() -> List[int]:
    """The GPUs this process sees, as indices for submitit's local jobs."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return list(range(torch.cuda.device_count()))
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"CUDA_VISIBLE_DEVICES={value}: local jobs are given their GPUs by index (submitit); "
                         "name the GPUs by index, or use --workers 1") from None


def _run_jobs(work, cluster, slurm_partition, threads, devices, job_args, bar, shards, fn=None) -> list:
    """One submitit job per device entry, all at once (``fn(*job_args(j))``, by default
    ``score_shards``); progress is the shards on disk."""
    import submitit

    params = {"timeout_min": 24 * 60}
    if cluster == "local":
        executor = submitit.LocalExecutor(folder=os.path.join(work, "logs"))
        if devices and devices[0].startswith("cuda"):
            # a local job sees only the GPUs it is given (else CUDA_VISIBLE_DEVICES=""): give it
            # those this process sees, in the same order, so that cuda:N names the same device
            gpus = visible_gpu_indices()
            params.update(gpus_per_node=len(gpus), visible_gpus=gpus)
    else:
        # named explicitly: auto-detection would quietly run locally without SLURM
        try:
            executor = submitit.AutoExecutor(folder=os.path.join(work, "logs"), cluster=cluster)
        except RuntimeError as e:  # e.g. no srun on this machine
            raise ValueError(f"--cluster {cluster}: {e}") from None
        if cluster == "slurm":
            params.update(slurm_partition=slurm_partition, cpus_per_task=threads)
            if devices and devices[0].startswith("cuda"):
                params.update(gpus_per_node=1)
    executor.update_parameters(**params)
    jobs = [executor.submit(fn or score_shards, *job_args(j)) for j in range(len(devices))]
    try:
        while not all(job.done() for job in jobs):
            for job in jobs:
                if job.done():
                    job.result()  # a failed job stops the run now, not when the others end
            bar.n = sum(os.path.exists(s) for s in shards)
            bar.refresh()
            time.sleep(0.5)
        return [job.result() for job in jobs]
    except BaseException:
        for job in jobs:
            with contextlib.suppress(Exception):
                job.cancel(check=False)
        raise


def _truncated_rows(shards: Sequence[str]) -> Tuple[int, int]:
    """Rows truncated over all shards, from their records; and the shards without one."""
    total = missing = 0
    for s in shards:
        try:
            with open(_record_path(s)) as f:
                total += json.load(f)["truncated"]
        except (FileNotFoundError, ValueError, KeyError):
            missing += 1
    return total, missing


def _classes_of(checkpoint_dir: str, checkpoint_file: str) -> List[str]:
    """The class order of a teacher, from its saved config and label dictionary."""
    from fairseq import checkpoint_utils
    from fairseq.data import Dictionary

    state = checkpoint_utils.load_checkpoint_to_cpu(os.path.join(checkpoint_dir, checkpoint_file))
    cfg = state["cfg"]
    data = checkpoint_dir if os.path.exists(os.path.join(checkpoint_dir, "label", "dict.txt")) else cfg.task.data
    labels = Dictionary.load(os.path.join(data, "label", "dict.txt"))
    return labels.symbols[labels.nspecial:labels.nspecial + cfg.task.num_classes]
