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

import torch
from fairseq.data import TruncateDataset, encoders
from fairseq.tasks import register_task

from .student_task import StudentTask, StudentTaskConfig

logger = logging.getLogger(__name__)


@dataclass
class GlueDistillationConfig(StudentTaskConfig):
    max_positions: int = field(
        default=256, metadata={"help": "keep at most this many tokens per text (the first ones)"}
    )


@register_task("glue_distillation", dataclass=GlueDistillationConfig)
class GlueDistillationTask(StudentTask):
    """Classify a text, or a pair (when ``DATA/input1`` exists), from its BPE tokens."""

    token_inputs = True

    def __init__(self, cfg, data_dictionary, label_dictionary, classes, pairs: bool = False):
        super().__init__(cfg, data_dictionary, label_dictionary, classes)
        self.input_keys = ("input0", "input1") if pairs else ("input0",)
        self.bpe = None

    @classmethod
    def setup_inputs(cls, cfg, data_dict) -> dict:
        pairs = os.path.isdir(os.path.join(cfg.data, "input1"))
        if pairs:
            other = cls.load_dictionary(os.path.join(cfg.data, "input1", "dict.txt"))
            if other.symbols != data_dict.symbols:
                raise ValueError(f"{cfg.data}/input1/dict.txt differs from input0/dict.txt: binarize "
                                 f"both sides with the same --srcdict")
        logger.info("inputs: %s", "sentence pairs" if pairs else "single texts")
        return {"pairs": pairs}

    def prepare_input(self, dataset, is_train: bool):
        # the </s> of fairseq-preprocess stays: every text has at least one token
        return TruncateDataset(dataset, self.cfg.max_positions)

    def set_bpe(self, bpe_cfg) -> None:
        """The BPE applied before fairseq-preprocess (saved with the checkpoint as --bpe)."""
        self.bpe = encoders.build_bpe(bpe_cfg)
        if self.bpe is None:
            raise ValueError("the checkpoint was trained without --bpe, so raw text cannot be "
                             "tokenized as its data-bin was: retrain with --bpe wordpiece or "
                             "--bpe sentencepiece (the encoding used before fairseq-preprocess)")

    def encode_texts(self, texts):
        if self.bpe is None:
            raise ValueError("set_bpe() first: raw text needs the BPE the data-bin was encoded with")
        d = self.source_dictionary
        encoded = self.bpe.encode_batch(texts) if hasattr(self.bpe, "encode_batch") \
            else [self.bpe.encode(t) for t in texts]
        limit = self.cfg.max_positions
        return [d.encode_line(x, append_eos=True, add_if_not_exist=False).long()[:limit] for x in encoded]

    def encode_text(self, text: str) -> torch.Tensor:
        return self.encode_texts([text])[0]
