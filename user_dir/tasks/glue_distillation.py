"""Token-level students (the D-BERT BiLSTM) trained on teacher logits and/or gold labels.

Data-bin layout (see ``data-bin-templates/``)::

    DATA/input0/{dict.txt, SPLIT.bin, SPLIT.idx}   BPE tokens, binarized by fairseq-preprocess
    DATA/input1/...                                the second texts (pairs: found automatically)
    DATA/label/{dict.txt, SPLIT.bin, SPLIT.idx}    gold labels (SPLIT files optional)
    DATA/distill/{SPLIT.npy, SPLIT.json}           teacher logits (with --distillation-target)

The tokens are whatever BPE was applied before ``fairseq-preprocess``: the
teacher's WordPiece (``distill-bpe-encode --bpe wordpiece``, with the
teacher's ``dict.txt`` as ``--srcdict``, so the student can start from the
teacher's embeddings) or a SentencePiece model trained on the transfer set
(``distill-bpe-encode --bpe sentencepiece``).  Pass the same ``--bpe`` to
``fairseq-train`` (it is saved in the checkpoint) and ``distill-predict``
tokenizes raw text exactly the same way.  Labels and teacher logits get the
checks of the n-gram task: row counts, class order, NaN, unknown labels.
"""

import logging
import os
from dataclasses import dataclass, field

from fairseq.data import TruncateDataset
from fairseq.tasks import register_task

from .feature_based_sentence_prediction import (
    FeatureBasedSentencePredictionTask,
    StudentTaskConfig,
    _load_dictionary,
    label_classes,
)

logger = logging.getLogger(__name__)


@dataclass
class GlueDistillationConfig(StudentTaskConfig):
    max_positions: int = field(
        default=256, metadata={"help": "keep at most this many tokens per text (the first ones)"}
    )


@register_task("glue_distillation", dataclass=GlueDistillationConfig)
class GlueDistillationTask(FeatureBasedSentencePredictionTask):
    """Classify a text, or a pair (when ``DATA/input1`` exists), from its BPE tokens."""

    token_inputs = True

    def __init__(self, cfg, data_dictionary, label_dictionary, classes, pairs: bool):
        super().__init__(cfg, data_dictionary, label_dictionary, classes)
        self.input_keys = ("input0", "input1") if pairs else ("input0",)

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        if cfg.num_classes <= 0:
            raise ValueError("set --num-classes")
        data_dict = _load_dictionary(os.path.join(cfg.data, "input0", "dict.txt"))
        logger.info("[input] dictionary: %d types", len(data_dict))
        pairs = os.path.isdir(os.path.join(cfg.data, "input1"))
        if pairs:
            other = _load_dictionary(os.path.join(cfg.data, "input1", "dict.txt"))
            if other.symbols != data_dict.symbols:
                raise ValueError(f"{cfg.data}/input1/dict.txt differs from input0/dict.txt: binarize "
                                 f"both sides with the same --srcdict")
        label_path = os.path.join(cfg.data, "label", "dict.txt")
        label_dict = _load_dictionary(label_path)
        classes = label_classes(label_dict, cfg.num_classes, label_path)
        logger.info("[label] classes: %s; %s", classes, "sentence pairs" if pairs else "single texts")
        return cls(cfg, data_dict, label_dict, classes, pairs)

    def _prepare_input(self, dataset, is_train: bool):
        # the </s> of fairseq-preprocess stays: every text has at least one token
        return TruncateDataset(dataset, self.cfg.max_positions)
