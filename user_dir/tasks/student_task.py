"""What every student task shares: the data-bin, gold labels, teacher logits, raw-text batches.

Data-bin layout (see ``data-bin-templates/``)::

    DATA/input0/{dict.txt, SPLIT.bin, SPLIT.idx}   inputs (n-gram ids or BPE tokens)
    DATA/input1/...                                the second texts of pairs
    DATA/label/{dict.txt, SPLIT.bin, SPLIT.idx}    gold labels (SPLIT files optional)
    DATA/distill/{SPLIT.npy, SPLIT.json}           teacher logits (with --distillation-target)

Subclasses say what an input is: ``prepare_input`` (the dataset of one side's
ids as the model sees them) and ``encode_text`` (the same ids for a raw text,
for prediction).  The checks here refuse what would train silently wrong:
row counts, unknown labels, class order, non-finite teacher logits.
"""

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np
import torch
from fairseq.data import (
    Dictionary,
    IdDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    OffsetTokensDataset,
    RightPadDataset,
    SortDataset,
    StripTokenDataset,
    data_utils,
    indexed_dataset,
)
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask
from omegaconf import II, MISSING, OmegaConf, open_dict

from ..data.teacher_targets import TeacherTargetDataset, load_teacher_targets

logger = logging.getLogger(__name__)


@dataclass
class StudentTaskConfig(FairseqDataclass):
    """Flags every student task shares (data-bin, classes, teacher logits)."""

    data: str = field(default=MISSING, metadata={"help": "path to the data-bin directory"})
    num_classes: int = field(default=-1, metadata={"help": "number of classes"})
    distillation_target: bool = field(
        default=False,
        metadata={"help": "load teacher logits from DATA/distill/SPLIT.npy (required for the "
                          "training split, optional for the others)"},
    )
    classes_from_label_dict: bool = field(
        default=False,
        metadata={"help": "accept teacher logits without their DATA/distill/SPLIT.json class-order file, "
                          "taking the columns to follow label/dict.txt (otherwise refused)"},
    )
    no_shuffle: bool = field(default=False, metadata={"help": "keep the data order"})
    classification_head_name: str = II("criterion.classification_head_name")
    train_subset: str = II("dataset.train_subset")
    seed: int = II("common.seed")
    fp16: bool = II("common.fp16")
    bf16: bool = II("common.bf16")
    memory_efficient_fp16: bool = II("common.memory_efficient_fp16")
    cpu: bool = II("common.cpu")


def label_classes(label_dict: Dictionary, num_classes: int, path: str) -> List[str]:
    """The class names in column order, from a label dictionary."""
    real = [s for s in label_dict.symbols[label_dict.nspecial:] if not s.startswith("madeupword")]
    if len(real) != num_classes:
        raise ValueError(
            f"{path} lists {len(real)} labels {real} but --num-classes is {num_classes}"
        )
    return real


def check_labels(dataset, dictionary: Dictionary, num_classes: int, classes, path: str) -> None:
    """Every row is one known label (fairseq-preprocess maps unknown ones to <unk>).

    Vectorized over the memory-mapped file: transfer sets have millions of rows.
    """
    sizes = np.asarray(dataset.sizes)
    lo, hi = dictionary.nspecial, dictionary.nspecial + num_classes
    bad = sizes != 2
    bad[~bad] |= _label_ids(dataset, np.flatnonzero(~bad), lo, hi)
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(
            f"{path}: line {first + 1} has label {dictionary.string(dataset[first][:-1])!r}, not one of "
            f"{classes} (fairseq-preprocess maps unknown labels to <unk>)"
        )


def _label_ids(dataset, rows: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Whether the first token of each of ``rows`` lies outside [lo, hi)."""
    index = getattr(dataset, "_index", None)
    if index is not None and hasattr(index, "_pointers"):  # MMapIndexedDataset: read the buffer
        flat = np.frombuffer(dataset._bin_buffer, dtype=index.dtype)
        ids = flat[np.asarray(index._pointers)[rows] // index.dtype().itemsize].astype(np.int64)
    else:
        ids = np.array([int(dataset[i][0]) for i in rows], dtype=np.int64)
    return (ids < lo) | (ids >= hi)


def check_precision(cfg) -> None:
    """Half precision needs a GPU: on CPU fairseq fails deep inside (a CUDA assertion for --fp16,
    an XLA device for --bf16)."""
    half = [flag for flag, name in (("--memory-efficient-fp16", "memory_efficient_fp16"),
                                    ("--fp16", "fp16"), ("--bf16", "bf16"))
            if getattr(cfg, name, False) is True]
    if half and (getattr(cfg, "cpu", False) is True or not torch.cuda.is_available()):
        raise ValueError(f"{half[0]} needs a CUDA GPU and this run has none: drop {half[0]} to train in fp32")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def check_fingerprint(data: str, saved: dict, current: dict) -> None:
    """Refuse a data-bin that is not the one a checkpoint was trained with, naming the file."""
    for name, digest in saved.items():
        if current.get(name) != digest:
            what = {"label/dict.txt": "its class order differs",
                    "input0/ngrams.json": "its tokenizer, n-gram range or size differs"}.get(
                        name, "its contents differ")
            raise ValueError(
                f"{os.path.join(data, name)} is not the one this checkpoint was trained with "
                f"({what}): load the checkpoint with its own data-bin"
            )


class StudentTask(FairseqTask):
    """A classifier of one text (``input0``) or a pair (``input0``, ``input1``) trained on gold
    labels and/or teacher logits."""

    cfg: StudentTaskConfig
    input_keys = ("input0",)
    token_inputs = False

    def __init__(self, cfg, data_dictionary, label_dictionary, classes):
        super().__init__(cfg)
        self.dictionary = data_dictionary
        self._label_dictionary = label_dictionary
        self.classes = classes
        self.data_fingerprint = {}

    @classmethod
    def load_dictionary(cls, filename):
        if os.path.isdir(filename):
            raise ValueError(f"dictionary {filename} is a directory: name its dict.txt")
        if not os.path.exists(filename):
            raise FileNotFoundError(f"dictionary not found: {filename}")
        return Dictionary.load(filename)

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        if cfg.num_classes <= 0:
            raise ValueError("set --num-classes")
        check_precision(cfg)
        data_dict = cls.load_dictionary(os.path.join(cfg.data, "input0", "dict.txt"))
        logger.info("[input] dictionary: %d types", len(data_dict))
        label_path = os.path.join(cfg.data, "label", "dict.txt")
        label_dict = cls.load_dictionary(label_path)
        classes = label_classes(label_dict, cfg.num_classes, label_path)
        logger.info("[label] classes: %s", classes)
        extra = cls.setup_inputs(cfg, data_dict)
        task = cls(cfg, data_dict, label_dict, classes, **extra)
        task.data_fingerprint = cls.fingerprint(cfg, classes, extra)
        return task

    @classmethod
    def fingerprint(cls, cfg, classes, extra) -> dict:
        """What identifies the inputs a model was trained on, by the file it comes from."""
        with open(os.path.join(cfg.data, "input0", "dict.txt"), "rb") as f:
            fp = {"input0/dict.txt": hashlib.sha256(f.read()).hexdigest()[:16]}
        fp["label/dict.txt"] = _digest(list(classes))
        return fp

    # The checkpoint keeps the task's state (fairseq saves it as "task_state" and hands it back
    # to load_state_dict when it loads the checkpoint for inference): the data-bin's fingerprint.
    def state_dict(self):
        return {"data_fingerprint": dict(self.data_fingerprint)}

    def load_state_dict(self, state_dict):
        saved = state_dict.get("data_fingerprint") if isinstance(state_dict, dict) else None
        if saved:  # checkpoints from before fingerprints have none
            check_fingerprint(self.cfg.data, saved, self.data_fingerprint)

    @classmethod
    def setup_inputs(cls, cfg, data_dict) -> dict:
        """Extra constructor arguments that depend on the inputs (overridden)."""
        return {}

    # ------------------------------------------------------------------ data

    def _path(self, key: str, split: str) -> str:
        return os.path.join(self.cfg.data, key, split)

    def _load_indexed(self, key: str, split: str, dictionary, combine: bool):
        path = self._path(key, split)
        if indexed_dataset.infer_dataset_impl(path) is None:
            return None
        return data_utils.load_indexed_dataset(path, dictionary, combine=combine)

    def _load_inputs(self, key: str, split: str, combine: bool):
        dataset = self._load_indexed(key, split, self.source_dictionary, combine)
        if dataset is None:
            raise FileNotFoundError(f"could not find dataset: {self._path(key, split)}.{{bin,idx}}")
        return dataset

    def prepare_input(self, dataset, is_train: bool):
        """A side's ids as the model sees them."""
        raise NotImplementedError

    def join_inputs(self, sides: list) -> list:
        """The model's inputs from the sides' (datasets, or lists of id tensors): as they are."""
        return sides

    def _load_labels(self, split: str, num_examples: int, combine: bool):
        dataset = self._load_indexed("label", split, self.label_dictionary, combine)
        if dataset is None:
            return None
        path = self._path("label", split)
        if len(dataset) != num_examples:
            raise ValueError(f"{path} has {len(dataset)} labels but {self._path('input0', split)} "
                             f"has {num_examples} examples")
        d = self.label_dictionary
        check_labels(dataset, d, self.cfg.num_classes, self.classes, path)
        return OffsetTokensDataset(StripTokenDataset(dataset, id_to_strip=d.eos()), offset=-d.nspecial)

    def load_dataset(self, split, combine=False, **kwargs):
        is_train = split == self.cfg.train_subset
        inputs = [self._load_inputs(key, split, combine) for key in self.input_keys]
        n = len(inputs[0])
        for key, ds in zip(self.input_keys[1:], inputs[1:]):
            if len(ds) != n:
                raise ValueError(f"{self._path(key, split)} has {len(ds)} examples but "
                                 f"{self._path('input0', split)} has {n}")
        inputs = self.join_inputs([self.prepare_input(ds, is_train) for ds in inputs])

        net_input = {}
        for i, ds in enumerate(inputs):
            suffix = "" if i == 0 else str(i)
            net_input["src_tokens" + suffix] = RightPadDataset(ds, pad_idx=self.source_dictionary.pad())
            net_input["src_lengths" + suffix] = NumelDataset(ds, reduce=False)
        dataset = {
            "id": IdDataset(),
            "net_input": net_input,
            "nsentences": NumSamplesDataset(),
            "ntokens": NumelDataset(inputs[0], reduce=True),
        }
        target = self._load_labels(split, n, combine)
        if target is not None:
            dataset["target"] = target
        if self.cfg.distillation_target:
            npy = self._path("distill", split) + ".npy"
            if os.path.exists(npy):
                array = load_teacher_targets(npy, n, self.cfg.num_classes, self.classes,
                                             rows_from=self._path("input0", split),
                                             require_class_order=not self.cfg.classes_from_label_dict)
                dataset["distill_target"] = TeacherTargetDataset(array)
            elif is_train:
                raise FileNotFoundError(f"--distillation-target is set but {npy} does not exist")
            else:
                logger.info("no teacher logits for %s: gold labels only", split)
        if target is None and "distill_target" not in dataset and not getattr(self.cfg, "teacher_checkpoint", ""):
            raise ValueError(f"{split}: neither gold labels ({self._path('label', split)}) nor teacher "
                             f"logits nor a --teacher-checkpoint: nothing to learn or evaluate")

        sizes = sum(ds.sizes for ds in inputs)
        nested = NestedDictionaryDataset(dataset, sizes=[sizes])
        if self.cfg.no_shuffle:
            self.datasets[split] = nested
        else:
            with data_utils.numpy_seed(self.cfg.seed):
                shuffle = np.random.permutation(len(nested))
            self.datasets[split] = SortDataset(nested, sort_order=[shuffle])
        logger.info("loaded %s: %d examples%s%s", split, n,
                    ", gold labels" if target is not None else "",
                    ", teacher logits" if "distill_target" in dataset else "")
        return self.datasets[split]

    def get_batch_iterator(self, dataset, **kwargs):
        # fairseq's batch_by_size drops a last batch whose size is not a multiple of
        # --required-batch-size-multiple (8): each validation would skip up to 7 examples
        # (the longest, as batches follow length). Evaluation splits keep every example;
        # training keeps fairseq's rule (a different few are left out each epoch).
        if dataset is not self.datasets.get(self.cfg.train_subset):
            kwargs["required_batch_size_multiple"] = 1
        return super().get_batch_iterator(dataset, **kwargs)

    # ------------------------------------------------------------- raw text

    def encode_text(self, text: str) -> torch.Tensor:
        """One raw text's ids, exactly as ``prepare_input`` gives them at evaluation."""
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str]) -> List[torch.Tensor]:
        return [self.encode_text(t) for t in texts]

    def build_batch(self, texts: Sequence, device=None) -> dict:
        """The model's ``net_input`` for raw texts (strings, or ``(a, b)`` tuples for pairs)."""
        return self.collate_ids(self.encode_examples(texts), device=device)

    def encode_examples(self, texts: Sequence) -> List[List[torch.Tensor]]:
        """Per model input (one, or two for a pair model), the ids of every text."""
        if len(self.input_keys) == 1:
            if any(not isinstance(t, str) for t in texts):
                raise ValueError("this model classifies single texts: pass strings")
            sides = [list(texts)]
        else:
            if any(isinstance(t, str) or len(t) != 2 for t in texts):
                raise ValueError("this model classifies pairs: pass (text_a, text_b) tuples")
            sides = [[t[0] for t in texts], [t[1] for t in texts]]
        return self.join_inputs([self.encode_texts(side) for side in sides])

    def collate_ids(self, inputs: List[List[torch.Tensor]], rows=None, device=None) -> dict:
        """``net_input`` of ``rows`` (default: all) of ``encode_examples``' output."""
        pad = self.source_dictionary.pad()
        net_input = {}
        for i, ids in enumerate(inputs):
            if rows is not None:
                ids = [ids[r] for r in rows]
            suffix = "" if i == 0 else str(i)
            net_input["src_tokens" + suffix] = data_utils.collate_tokens(ids, pad).to(device)
            net_input["src_lengths" + suffix] = torch.tensor([len(x) for x in ids], device=device)
        return net_input

    # -------------------------------------------------------------- teacher

    online_teacher = None  # a token task's --teacher-checkpoint
    student_shape = None  # set by build_model for a transformer student

    def teacher_outputs(self, sample, hidden: bool = False, attention: bool = False):
        """The teacher's outputs for a batch (a ``TransformerOutputs``), None without a teacher.

        Online (``--teacher-checkpoint``): logits, and hidden states and attention maps when
        asked.  Offline (``--distillation-target``): the logits of ``DATA/distill/SPLIT.npy``.
        """
        from ..models.transformer_outputs import TransformerOutputs

        if self.online_teacher is not None:
            return self.online_teacher(sample["net_input"]["src_tokens"], hidden=hidden, attention=attention)
        logits = sample.get("distill_target")
        if logits is None:
            return None
        if hidden or attention:
            raise ValueError("hidden states and attention maps need the teacher itself: "
                             "pass --teacher-checkpoint (offline logits have neither)")
        return TransformerOutputs(logits=logits.float())

    def teacher_logits(self, sample):
        out = self.teacher_outputs(sample)
        return None if out is None else out.logits

    # ---------------------------------------------------------------- model

    def build_model(self, cfg, from_checkpoint=False):
        from fairseq import models
        from fairseq.models import ARCH_MODEL_REGISTRY
        from fairseq.models.roberta import RobertaModel

        arch = getattr(cfg, "arch", None) or getattr(cfg, "_name", None)
        transformer = isinstance(ARCH_MODEL_REGISTRY.get(arch), type) and \
            issubclass(ARCH_MODEL_REGISTRY[arch], RobertaModel)
        self.check_model_inputs(cfg, transformer)
        with open_dict(cfg) if OmegaConf.is_config(cfg) else contextlib.ExitStack():
            if not transformer:  # a transformer's --max-positions sizes its position table
                cfg.max_positions = self.cfg.max_positions
            # weights come from the checkpoint: its --embed-init file may be gone, and is not read
            if from_checkpoint and getattr(cfg, "embed_init", ""):
                cfg.embed_init = ""
        model = models.build_model(cfg, self, from_checkpoint)
        model.register_classification_head(self.cfg.classification_head_name,
                                           num_classes=self.cfg.num_classes)
        if transformer:  # what a layer-wise criterion checks its layer map against
            from ..models.transformer_outputs import transformer_shape

            self.student_shape = transformer_shape(model)
        return model

    def check_model_inputs(self, cfg, transformer: bool) -> None:
        """Refuse a model that cannot read this task's inputs (overridden)."""

    def max_positions(self):
        return self.cfg.max_positions * len(self.input_keys)

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    @property
    def label_dictionary(self):
        return self._label_dictionary
