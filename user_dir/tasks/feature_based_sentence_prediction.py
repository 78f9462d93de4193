"""Tasks over binarized n-gram features, with optional gold labels and teacher logits.

Data-bin layout (see ``data-bin-templates/``)::

    DATA/input0/{dict.txt, SPLIT.bin, SPLIT.idx, ngrams.json}
    DATA/input1/...                  (sentence pairs only)
    DATA/label/{dict.txt, SPLIT.bin, SPLIT.idx}   (SPLIT files optional)
    DATA/distill/{SPLIT.npy, SPLIT.json}          (with --distillation-target)
"""

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import List

import numpy as np
from fairseq.data import indexed_dataset
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
)
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING, OmegaConf, open_dict

from ..data.feature_dropout_dataset import FeatureDropoutDataset
from ..data.ngrams import load_settings
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
    no_shuffle: bool = field(default=False, metadata={"help": "keep the data order"})
    classification_head_name: str = II("criterion.classification_head_name")
    train_subset: str = II("dataset.train_subset")
    seed: int = II("common.seed")


@dataclass
class FeatureBasedSentencePredictionConfig(StudentTaskConfig):
    max_positions: int = field(
        default=2048,
        metadata={"help": "keep at most this many features per input: the first ones, in text order"},
    )
    feature_dropout: float = field(
        default=0.1,
        metadata={"help": "drop each training feature with this probability, a fresh draw every "
                          "epoch (never at validation)"},
    )


def _load_dictionary(path: str) -> Dictionary:
    if not os.path.exists(path):
        raise FileNotFoundError(f"dictionary not found: {path}")
    return Dictionary.load(path)


def label_classes(label_dict: Dictionary, num_classes: int, path: str) -> List[str]:
    """The class names in column order, from a label dictionary."""
    real = [s for s in label_dict.symbols[label_dict.nspecial:] if not s.startswith("madeupword")]
    if len(real) != num_classes:
        raise ValueError(
            f"{path} lists {len(real)} labels {real} but --num-classes is {num_classes}"
        )
    return real


@register_task("feature_based_sentence_prediction", dataclass=FeatureBasedSentencePredictionConfig)
class FeatureBasedSentencePredictionTask(FairseqTask):
    """Classify one text from its n-gram features (the sparse-distillation DAN's task)."""

    cfg: FeatureBasedSentencePredictionConfig
    input_keys = ("input0",)

    def __init__(self, cfg, data_dictionary, label_dictionary, classes, ngram_settings=None):
        super().__init__(cfg)
        self.dictionary = data_dictionary
        self._label_dictionary = label_dictionary
        self.classes = classes
        self.ngram_settings = ngram_settings

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        if cfg.num_classes <= 0:
            raise ValueError("set --num-classes")
        data_path = os.path.join(cfg.data, "input0", "dict.txt")
        data_dict = _load_dictionary(data_path)
        logger.info("[input] dictionary: %d types", len(data_dict))
        label_path = os.path.join(cfg.data, "label", "dict.txt")
        label_dict = _load_dictionary(label_path)
        classes = label_classes(label_dict, cfg.num_classes, label_path)
        logger.info("[label] classes: %s", classes)
        settings = None
        settings_path = os.path.join(cfg.data, "input0", "ngrams.json")
        if os.path.exists(settings_path):
            settings = load_settings(settings_path)
            num_features = len(data_dict) - data_dict.nspecial
            if settings["num_features"] != num_features:
                logger.warning(
                    "%s describes %d features but %s has %d: was the dictionary made with "
                    "fairseq-preprocess --srcdict VOCAB?", settings_path,
                    settings["num_features"], data_path, num_features,
                )
        return cls(cfg, data_dict, label_dict, classes, settings)

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

    def _prepare_input(self, dataset, is_train: bool):
        """A text's ids as the model sees them (here: a bag of features, dropped out in training)."""
        # fairseq-preprocess appends </s>; a bag of features has no end
        dataset = StripTokenDataset(dataset, id_to_strip=self.source_dictionary.eos())
        p = self.cfg.feature_dropout if is_train else 0.0
        return FeatureDropoutDataset(dataset, p, self.cfg.max_positions, self.cfg.seed)

    def _load_labels(self, split: str, num_examples: int, combine: bool):
        dataset = self._load_indexed("label", split, self.label_dictionary, combine)
        if dataset is None:
            return None
        path = self._path("label", split)
        if len(dataset) != num_examples:
            raise ValueError(f"{path} has {len(dataset)} labels but {self._path('input0', split)} "
                             f"has {num_examples} examples")
        d = self.label_dictionary
        lo, hi = d.nspecial, d.nspecial + self.cfg.num_classes
        for i in range(len(dataset)):
            ids = dataset[i]
            if len(ids) != 2 or not lo <= int(ids[0]) < hi:
                raise ValueError(
                    f"{path}: line {i + 1} has label {d.string(ids[:-1])!r}, not one of "
                    f"{self.classes} (fairseq-preprocess maps unknown labels to <unk>)"
                )
        return OffsetTokensDataset(StripTokenDataset(dataset, id_to_strip=d.eos()), offset=-d.nspecial)

    def load_dataset(self, split, combine=False, **kwargs):
        is_train = split == self.cfg.train_subset
        inputs = [self._load_inputs(key, split, combine) for key in self.input_keys]
        n = len(inputs[0])
        for key, ds in zip(self.input_keys[1:], inputs[1:]):
            if len(ds) != n:
                raise ValueError(f"{self._path(key, split)} has {len(ds)} examples but "
                                 f"{self._path('input0', split)} has {n}")
        inputs = [self._prepare_input(ds, is_train) for ds in inputs]

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
                                             rows_from=self._path("input0", split))
                dataset["distill_target"] = TeacherTargetDataset(array)
            elif is_train:
                raise FileNotFoundError(f"--distillation-target is set but {npy} does not exist")
            else:
                logger.info("no teacher logits for %s: gold labels only", split)
        if target is None and "distill_target" not in dataset:
            raise ValueError(f"{split}: neither gold labels ({self._path('label', split)}) nor "
                             f"teacher logits: nothing to learn or evaluate")

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

    def build_model(self, cfg, from_checkpoint=False):
        from fairseq import models

        with open_dict(cfg) if OmegaConf.is_config(cfg) else contextlib.ExitStack():
            cfg.max_positions = self.cfg.max_positions
        # a model built to receive a checkpoint's weights skips its --embed-init file
        self.loading_checkpoint = from_checkpoint
        try:
            model = models.build_model(cfg, self, from_checkpoint)
        finally:
            self.loading_checkpoint = False
        model.register_classification_head(self.cfg.classification_head_name,
                                           num_classes=self.cfg.num_classes)
        return model

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


@register_task("feature_based_sentence_pair_prediction", dataclass=FeatureBasedSentencePredictionConfig)
class FeatureBasedSentencePairPredictionTask(FeatureBasedSentencePredictionTask):
    """Classify a pair of texts (``input0``, ``input1``) from their n-gram features."""

    input_keys = ("input0", "input1")
