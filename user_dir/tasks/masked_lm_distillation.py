"""Task-agnostic distillation of a masked-LM teacher over unlabelled text (DistilBERT).

Data: a corpus (one document per line) in the teacher's BPE, binarized by
``fairseq-preprocess --only-source --srcdict TEACHER/dict.txt``: ``DATA/dict.txt``
and ``DATA/{train,valid}.{bin,idx}``.  Each document is cut into sequences of at
most ``--tokens-per-sample`` tokens (``<s> ... </s>``) and sequences shorter than
``--min-tokens`` are dropped (``data/mlm_targets.py``).  Masked-LM targets follow
DistilBERT: 15% of a sequence's real tokens, drawn with probability proportional
to ``count ** -mlm_smoothing`` (counts of the training split, computed once and
cached as ``DATA/train.token_counts.npy``), 80/10/10 mask/keep/random.  Teacher
and student read the same masked input; ``--teacher-checkpoint`` is the teacher,
run inside training (``MaskedLMTeacher``).  The criterion is
``composite_distillation``.
"""

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
from fairseq.data import (
    Dictionary,
    IdDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    RightPadDataset,
    SortDataset,
    data_utils,
)
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from ..data.mlm_targets import DocumentChunks, SmoothedMaskDataset, smoothed_probabilities, token_counts
from ..fileio import atomic_output

logger = logging.getLogger(__name__)


@dataclass
class MaskedLMDistillationConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "DATA with dict.txt (the teacher's) and SPLIT.bin/idx"})
    tokens_per_sample: int = field(
        default=512, metadata={"help": "longest sequence, <s> and </s> included; longer documents are cut"}
    )
    min_tokens: int = field(
        default=12, metadata={"help": "drop shorter sequences (DistilBERT drops those of 11 tokens or fewer)"}
    )
    mlm_mask_prob: float = field(default=0.15, metadata={"help": "share of a sequence's real tokens made targets"})
    mlm_keep_prob: float = field(default=0.1, metadata={"help": "share of the targets left as they are"})
    mlm_random_prob: float = field(default=0.1, metadata={"help": "share of the targets replaced by a random token"})
    mlm_smoothing: float = field(
        default=0.7, metadata={"help": "targets drawn with probability proportional to count^-smoothing "
                                       "(DistilBERT's; 0: uniform over real tokens)"}
    )
    teacher_checkpoint: str = field(
        default="", metadata={"help": "the masked-LM teacher (checkpoint, or directory with checkpoint_best.pt)"}
    )
    seed: int = II("common.seed")


def counts_path(data: str) -> str:
    return os.path.join(data, "train.token_counts.npy")


def load_token_counts(data: str, dictionary: Dictionary, dataset) -> np.ndarray:
    """The training split's token counts, computed once and cached beside it (refreshed when the split
    or the dictionary changes)."""
    with open(os.path.join(data, "dict.txt"), "rb") as f:
        stamp = {"rows": len(dataset), "tokens": int(np.asarray(dataset.sizes).sum()),
                 "dict_sha256": hashlib.sha256(f.read()).hexdigest()}
    path, meta = counts_path(data), counts_path(data) + ".json"
    if os.path.exists(path) and os.path.exists(meta):
        with open(meta, encoding="utf-8") as f:
            if json.load(f) == stamp:
                return np.load(path)
    logger.info("counting tokens of %s/train (once; cached in %s)", data, path)
    try:
        counts = token_counts(dataset, len(dictionary))
    except ValueError as e:
        raise ValueError(f"{os.path.join(data, 'train.bin')}: {e}: binarize with this dict.txt") from None
    with atomic_output(meta + ".part", "w") as f:  # the counts are trusted once their stamp is there
        json.dump(stamp, f)
    with atomic_output(path, "wb") as f:
        np.save(f, counts)
    os.replace(meta + ".part", meta)
    return counts


@register_task("masked_lm_distillation", dataclass=MaskedLMDistillationConfig)
class MaskedLMDistillationTask(FairseqTask):
    cfg: MaskedLMDistillationConfig

    def __init__(self, cfg, dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.mask_idx = dictionary.index("<mask>")
        if self.mask_idx == dictionary.unk():
            raise ValueError(f"{cfg.data}/dict.txt has no <mask>: binarize with the teacher's dict.txt "
                             f"(distill-import-hf writes one)")
        self.teacher = None
        self.token_probs = None

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        path = os.path.join(cfg.data, "dict.txt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"dictionary not found: {path}")
        return cls(cfg, Dictionary.load(path))

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    def special_ids(self):
        d = self.dictionary
        return [d.bos(), d.pad(), d.eos(), d.unk(), self.mask_idx]

    def _indexed(self, split):
        path = os.path.join(self.cfg.data, split)
        dataset = data_utils.load_indexed_dataset(path, self.dictionary)
        if dataset is None:
            raise FileNotFoundError(f"split not found: {path}.bin/.idx (fairseq-preprocess --only-source)")
        return dataset

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        cfg, d = self.cfg, self.dictionary
        if self.token_probs is None:
            counts = load_token_counts(cfg.data, d, self._indexed("train"))
            self.token_probs = smoothed_probabilities(counts, cfg.mlm_smoothing, self.special_ids())
        docs = self._indexed(split)
        chunks = DocumentChunks(docs, docs.sizes, cfg.tokens_per_sample, cfg.min_tokens, d.bos(), d.eos())
        if not len(chunks):
            raise ValueError(f"{cfg.data}/{split}: no sequence of at least --min-tokens {cfg.min_tokens} tokens")
        logger.info("%s: %d documents -> %d sequences of at most %d tokens", split, len(docs), len(chunks),
                    cfg.tokens_per_sample)
        src, tgt = SmoothedMaskDataset.apply_mask(
            chunks, token_probs=self.token_probs, mask_idx=self.mask_idx, pad_idx=d.pad(), seed=cfg.seed,
            mask_prob=cfg.mlm_mask_prob, keep_prob=cfg.mlm_keep_prob, random_prob=cfg.mlm_random_prob)
        dataset = NestedDictionaryDataset(
            {"id": IdDataset(),
             "net_input": {"src_tokens": RightPadDataset(src, pad_idx=d.pad()),
                           "src_lengths": NumelDataset(src, reduce=False)},
             "target": RightPadDataset(tgt, pad_idx=d.pad()),
             "nsentences": NumSamplesDataset(),
             "ntokens": NumelDataset(src, reduce=True)},
            sizes=[src.sizes])
        with data_utils.numpy_seed(cfg.seed, epoch):
            shuffle = np.random.permutation(len(src))
        self.datasets[split] = SortDataset(dataset, sort_order=[shuffle, src.sizes])

    def load_teacher(self):
        if self.teacher is None and self.cfg.teacher_checkpoint:
            from .online_teacher import MaskedLMTeacher

            self.teacher = MaskedLMTeacher(self.cfg.teacher_checkpoint, self.dictionary,
                                           os.path.join(self.cfg.data, "dict.txt"), self.cfg.data)
        return self.teacher

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if getattr(model.encoder, "lm_head", None) is None:
            raise ValueError("masked-LM distillation needs a student with an LM head (hf_bert, or a "
                             "pruned_roberta without a factorised embedding)")
        from ..models.transformer_outputs import transformer_shape

        self.student_shape = transformer_shape(model)
        if not from_checkpoint:
            self.load_teacher()
        return model

    def max_positions(self):
        return self.cfg.tokens_per_sample
