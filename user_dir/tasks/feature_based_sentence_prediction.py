"""Tasks over binarized n-gram features (the sparse-distillation DAN's tasks).

``input0/`` holds each text's n-gram ids (``distill-extract-ngrams`` then
``fairseq-preprocess --srcdict VOCAB``) and ``input0/ngrams.json`` the
vocabulary's settings (tokenizer, n-gram range), with which raw text is
featurized for prediction exactly as the data-bin was.  The rest of the
layout is the student task's (``student_task.py``).
"""

import logging
import os
from dataclasses import dataclass, field
from typing import List, Sequence

import torch
from fairseq.data import StripTokenDataset
from fairseq.tasks import register_task

from ..data.feature_dropout_dataset import FeatureDropoutDataset
from ..preprocess.text_io import usable_cpus
from ..preprocess.ngrams import Featurizer, load_settings
from .student_task import StudentTask, StudentTaskConfig, _digest

logger = logging.getLogger(__name__)


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


@register_task("feature_based_sentence_prediction", dataclass=FeatureBasedSentencePredictionConfig)
class FeatureBasedSentencePredictionTask(StudentTask):
    """Classify one text from its n-gram features."""

    cfg: FeatureBasedSentencePredictionConfig
    input_keys = ("input0",)

    def __init__(self, cfg, data_dictionary, label_dictionary, classes, ngram_settings=None):
        super().__init__(cfg, data_dictionary, label_dictionary, classes)
        self.ngram_settings = ngram_settings
        self._featurizer = None

    @classmethod
    def setup_inputs(cls, cfg, data_dict) -> dict:
        settings_path = os.path.join(cfg.data, "input0", "ngrams.json")
        if not os.path.exists(settings_path):
            return {"ngram_settings": None}
        settings = load_settings(settings_path)
        num_features = len(data_dict) - data_dict.nspecial
        if settings["num_features"] != num_features:
            raise ValueError(
                f"{settings_path} describes {settings['num_features']} features but "
                f"{os.path.join(cfg.data, 'input0', 'dict.txt')} has {num_features}: binarize with "
                f"fairseq-preprocess --srcdict VOCAB and copy VOCAB.json of that same vocabulary"
            )
        return {"ngram_settings": settings}

    @classmethod
    def fingerprint(cls, cfg, classes, extra) -> dict:
        fp = super().fingerprint(cfg, classes, extra)
        settings = extra["ngram_settings"]
        if settings is not None:
            fp["input0/ngrams.json"] = _digest([settings["tokenizer"], list(settings["ngram_range"]),
                                                 settings["num_features"]])
        return fp

    def prepare_input(self, dataset, is_train: bool):
        # fairseq-preprocess appends </s>; a bag of features has no end
        dataset = StripTokenDataset(dataset, id_to_strip=self.source_dictionary.eos())
        p = self.cfg.feature_dropout if is_train else 0.0
        return FeatureDropoutDataset(dataset, p, self.cfg.max_positions, self.cfg.seed)

    @property
    def featurizer(self) -> Featurizer:
        """Raw text -> feature ids, as distill-extract-ngrams + fairseq-preprocess give them."""
        if self._featurizer is None:
            if self.ngram_settings is None:
                raise ValueError(
                    f"{os.path.join(self.cfg.data, 'input0', 'ngrams.json')} not found: copy the "
                    f"VOCAB.json written by distill-ngram-dict there to predict from raw text"
                )
            d = self.source_dictionary
            # a thread per usable core: featurizing is most of a DAN's prediction time
            self._featurizer = Featurizer(self.ngram_settings, d.symbols, d.nspecial, self.cfg.max_positions,
                                          threads=usable_cpus())
        return self._featurizer

    def encode_texts(self, texts: Sequence[str]) -> List[torch.Tensor]:
        return [torch.from_numpy(x) for x in self.featurizer.batch(list(texts))]

    def encode_text(self, text: str) -> torch.Tensor:
        return self.encode_texts([text])[0]

    def encode_flat(self, texts: Sequence[str]):
        """All texts' feature ids back to back and each text's count (no padding), as tensors."""
        ids, counts = self.featurizer.flat(list(texts))
        return torch.from_numpy(ids), torch.from_numpy(counts)


@register_task("feature_based_sentence_pair_prediction", dataclass=FeatureBasedSentencePredictionConfig)
class FeatureBasedSentencePairPredictionTask(FeatureBasedSentencePredictionTask):
    """Classify a pair of texts (``input0``, ``input1``) from their n-gram features."""

    input_keys = ("input0", "input1")
