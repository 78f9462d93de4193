"""Teacher logits: a fine-tuned fairseq classifier run over raw text.

The teacher is a ``sentence_prediction`` checkpoint (``hf_bert`` or fairseq
RoBERTa).  Its directory holds the checkpoint and either the data-bin
dictionaries (``input0/dict.txt``, ``label/dict.txt``) or a checkpoint whose
saved ``task.data`` still points at them; the BPE is the one saved with the
checkpoint (``--bpe wordpiece --wordpiece-vocab ...`` at fine-tuning), or
``tokenizer.json``/``vocab.txt`` found in the directory.

Inputs are encoded as fine-tuning encoded them (``init_token``,
``separator_token`` for pairs), truncated to the model's positions, sorted by
length into batches of at most ``batch_tokens`` padded tokens, and the logits
come back in input order.
"""

import logging
import os
import time
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .data.teacher_targets import save_teacher_targets
from .data.examples import read_examples
from .data.text_io import find_offsets, prepare_work_dir, remove_work_dir

logger = logging.getLogger(__name__)

Text = Union[str, Tuple[str, str]]


class Teacher:
    def __init__(self, checkpoint_dir: str, checkpoint_file: str = "checkpoint_best.pt",
                 device: Optional[str] = None):
        from fairseq import checkpoint_utils
        from fairseq.data import encoders

        import user_dir  # noqa: F401  (registers hf_bert and the wordpiece BPE)

        path = os.path.join(checkpoint_dir, checkpoint_file)
        if not os.path.exists(path):
            raise FileNotFoundError(f"teacher checkpoint not found: {path}")
        overrides = {}
        if os.path.exists(os.path.join(checkpoint_dir, "input0", "dict.txt")):
            overrides["data"] = os.path.abspath(checkpoint_dir)
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides)
        self.model, self.cfg, self.task = models[0].eval(), cfg, task
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        if cfg.bpe is not None:
            self.bpe = encoders.build_bpe(cfg.bpe)
        else:
            from .encoders.wordpiece import WordPieceBPE, WordPieceConfig

            self.bpe = WordPieceBPE(WordPieceConfig(wordpiece_vocab=checkpoint_dir))
        self.head = getattr(cfg.criterion, "classification_head_name", "sentence_classification_head")
        labels = task.label_dictionary
        self.classes = labels.symbols[labels.nspecial:labels.nspecial + cfg.task.num_classes]
        self.max_positions = min(cfg.task.max_positions, self.model.max_positions())

    def encode(self, text: Text) -> torch.Tensor:
        """Token ids as fine-tuning saw them: [init] a </s> ([sep] b </s>)."""
        d = self.task.source_dictionary
        sides = [text] if isinstance(text, str) else list(text)
        parts = []
        for i, side in enumerate(sides):
            ids = d.encode_line(self.bpe.encode(side), append_eos=True, add_if_not_exist=False).long()
            if i == 0 and self.cfg.task.init_token is not None:
                ids = torch.cat([ids.new([self.cfg.task.init_token]), ids])
            if i > 0 and self.cfg.task.separator_token is not None:
                ids = torch.cat([ids.new([self.cfg.task.separator_token]), ids])
            parts.append(ids)
        ids = torch.cat(parts)
        if len(ids) > self.max_positions:  # keep the end-of-sentence token
            ids = torch.cat([ids[: self.max_positions - 1], ids[-1:]])
        return ids

    @torch.inference_mode()
    def logits_of_tokens(self, tokens: Sequence[torch.Tensor], batch_tokens: int = 8192) -> np.ndarray:
        from fairseq.data import data_utils

        pad = self.task.source_dictionary.pad()
        out = np.zeros((len(tokens), len(self.classes)), dtype=np.float32)
        order = np.argsort([len(t) for t in tokens], kind="stable")
        start = 0
        while start < len(order):
            end = start + 1
            longest = len(tokens[order[start]])
            while end < len(order):
                longest = max(longest, len(tokens[order[end]]))
                if longest * (end - start + 1) > batch_tokens:
                    break
                end += 1
            idx = order[start:end]
            batch = data_utils.collate_tokens([tokens[i] for i in idx], pad).to(self.device)
            logits, _ = self.model(batch, features_only=True, classification_head_name=self.head)
            out[idx] = logits.float().cpu().numpy()
            start = end
        return out

    def logits(self, texts: Sequence[Text], batch_tokens: int = 8192) -> np.ndarray:
        return self.logits_of_tokens([self.encode(t) for t in texts], batch_tokens)

    def predict(self, texts: Sequence[Text], batch_tokens: int = 8192) -> List[str]:
        return [self.classes[i] for i in self.logits(texts, batch_tokens).argmax(axis=1)]


@lru_cache(maxsize=1)
def load_teacher(checkpoint_dir: str, checkpoint_file: str) -> Teacher:
    """One loaded teacher per process, reused by every shard it computes."""
    return Teacher(checkpoint_dir, checkpoint_file)


def score_shard(checkpoint_dir: str, checkpoint_file: str, path: str, start: int, end: int, fmt: str,
                text_columns: Sequence[int], skip_first: bool, batch_tokens: int, shard_path: str,
                threads: int = 0) -> int:
    """Logits of one shard saved to ``shard_path`` (atomically); returns its rows."""
    if threads:
        torch.set_num_threads(threads)
    texts, _ = read_examples(path, fmt, text_columns, None, skip_first, start, end)
    teacher = load_teacher(checkpoint_dir, checkpoint_file)
    logits = teacher.logits(texts, batch_tokens)
    tmp = shard_path + ".tmp.npy"
    np.save(tmp, logits)
    os.replace(tmp, shard_path)
    return len(texts)


def teacher_logits_file(checkpoint_dir: str, input_path: str, output_path: str, fmt: str = "text",
                        text_columns: Sequence[int] = (0,), header: bool = False,
                        checkpoint_file: str = "checkpoint_best.pt", batch_tokens: int = 8192,
                        workers: int = 1, cluster: str = "local", slurm_partition: Optional[str] = None,
                        shard_bytes: int = 8 << 20) -> dict:
    """Write ``output_path`` (.npy [N, C]) and its class-order .json for every example of the input.

    The input is cut into line-aligned shards computed by ``workers`` jobs
    (submitit: local processes, or SLURM jobs with ``cluster="slurm"``);
    finished shards survive a kill and are skipped on rerun.
    """
    import submitit
    from tqdm import tqdm

    if not os.path.isfile(input_path):
        raise FileNotFoundError(f"input file not found: {input_path}")
    if not output_path.endswith(".npy"):
        raise ValueError(f"--output must end with .npy: {output_path}")
    if cluster not in ("local", "slurm"):
        raise ValueError(f"--cluster must be local or slurm, got {cluster!r}")
    ckpt = os.path.join(checkpoint_dir, checkpoint_file)
    if not os.path.isfile(ckpt):
        raise FileNotFoundError(f"teacher checkpoint not found: {ckpt}")
    size = os.path.getsize(input_path)
    offsets = find_offsets(input_path, max(workers, size // shard_bytes + 1))
    work = output_path + ".shards"
    prepare_work_dir(work, {
        "input": os.path.abspath(input_path), "size": size, "mtime": os.path.getmtime(input_path),
        "checkpoint": os.path.abspath(ckpt), "checkpoint_mtime": os.path.getmtime(ckpt),
        "format": fmt, "columns": list(text_columns), "header": header, "offsets": offsets,
    })
    shards = [os.path.join(work, f"shard-{i:05d}.npy") for i in range(len(offsets) - 1)]
    todo = [i for i, s in enumerate(shards) if not os.path.exists(s)]
    if len(todo) < len(shards):
        logger.info("resuming: %d of %d shards already done", len(shards) - len(todo), len(shards))
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))

    def job_args(i):
        return (checkpoint_dir, checkpoint_file, input_path, offsets[i], offsets[i + 1], fmt,
                list(text_columns), header and offsets[i] == 0, batch_tokens, shards[i],
                threads if workers > 1 else 0)

    start = time.perf_counter()
    bar = tqdm(total=len(shards), initial=len(shards) - len(todo), unit="shard", desc="teacher logits",
               disable=None)
    if workers <= 1:
        for i in todo:
            score_shard(*job_args(i))
            bar.update(1)
    else:
        # named explicitly: auto-detection would quietly run locally without SLURM
        try:
            executor = submitit.AutoExecutor(folder=os.path.join(work, "logs"), cluster=cluster)
        except RuntimeError as e:  # e.g. no srun on this machine
            raise ValueError(f"--cluster {cluster}: {e}") from None
        params = {"timeout_min": 24 * 60}
        if cluster == "slurm":
            params.update(slurm_partition=slurm_partition, cpus_per_task=threads)
        executor.update_parameters(**params)
        for wave in range(0, len(todo), workers):  # at most `workers` jobs at a time
            jobs = [executor.submit(score_shard, *job_args(i)) for i in todo[wave:wave + workers]]
            for job in jobs:
                job.result()
                bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    logits = np.concatenate([np.load(s) for s in shards]) if shards else np.zeros((0, 0), np.float32)
    if workers <= 1:
        classes = load_teacher(checkpoint_dir, checkpoint_file).classes
    else:
        classes = _classes_of(checkpoint_dir, checkpoint_file)
    save_teacher_targets(output_path, logits.reshape(-1, len(classes)), classes,
                         teacher=os.path.abspath(ckpt), input=os.path.abspath(input_path))
    remove_work_dir(work)
    n = len(logits)
    logger.info("%d rows of teacher logits -> %s (%.1f examples/s)", n, output_path, n / max(seconds, 1e-9))
    return {"examples": n, "seconds": round(seconds, 2), "examples_per_second": round(n / max(seconds, 1e-9), 1)}


def _classes_of(checkpoint_dir: str, checkpoint_file: str) -> List[str]:
    """The class order of a teacher, from its saved config and label dictionary."""
    from fairseq import checkpoint_utils
    from fairseq.data import Dictionary

    state = checkpoint_utils.load_checkpoint_to_cpu(os.path.join(checkpoint_dir, checkpoint_file))
    cfg = state["cfg"]
    data = checkpoint_dir if os.path.exists(os.path.join(checkpoint_dir, "label", "dict.txt")) else cfg.task.data
    labels = Dictionary.load(os.path.join(data, "label", "dict.txt"))
    return labels.symbols[labels.nspecial:labels.nspecial + cfg.task.num_classes]

