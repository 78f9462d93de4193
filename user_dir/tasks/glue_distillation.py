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

Transformer students (``hf_bert``, ``pruned_roberta``) read the teacher's
input format, fairseq's ``sentence_prediction`` one: ``--init-token 0``
puts ``<s>`` first, and a pair is one sequence ``<s> a </s> [sep] b </s>``
(``--separator-token``).  ``--teacher-checkpoint`` runs the teacher inside
training (``online_teacher.py``); criteria read its outputs, or the offline
logits, through ``task.teacher_outputs(sample)``.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from fairseq.data import ConcatSentencesDataset, PrependTokenDataset, TruncateDataset, encoders
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from omegaconf import II

from ..preprocess.text_io import clean_text
from .online_teacher import OnlineTeacher
from .student_task import StudentTask, StudentTaskConfig

logger = logging.getLogger(__name__)


@dataclass
class GlueDistillationConfig(StudentTaskConfig):
    max_positions: int = field(
        default=256, metadata={"help": "keep at most this many tokens per text (the first ones)"}
    )
    init_token: Optional[int] = field(
        default=None, metadata={"help": "add this token first (0, <s>: what a transformer's classification "
                                        "head reads; as sentence_prediction's --init-token); pairs become "
                                        "one sequence"}
    )
    separator_token: Optional[int] = field(
        default=None, metadata={"help": "with --init-token, add this token before a pair's second text "
                                        "(2, </s>, as sentence_prediction)"}
    )
    teacher_checkpoint: str = field(
        default="", metadata={"help": "a fine-tuned teacher (checkpoint, or directory with checkpoint_best.pt) "
                                      "run inside training, frozen: its logits, hidden states and attention "
                                      "maps for the criterion; its dictionary must be input0/dict.txt's"}
    )
    # iterative pruning during training (ROSITA's settings 3 and 4; user_dir/compress/iterative.py)
    iterative_pruning: ChoiceEnum(["none", "width", "depth"]) = field(
        default="none", metadata={"help": "prune a pruned_roberta student while it trains: width (one head per "
                                          "layer per step, FFN width and embedding rank linearly to their "
                                          "targets, by Taylor importance of the period) or depth (the top "
                                          "layer per step)"}
    )
    prune_period: float = field(
        default=0.1, metadata={"help": "share of training within which the pruning steps are evenly spread "
                                       "(ROSITA's prun_period_proportion); then training goes on at the "
                                       "final shape"}
    )
    prune_total_updates: int = field(
        default=0, metadata={"help": "updates of the whole run the share is taken of (0: --max-update)"}
    )
    target_heads: int = field(default=0, metadata={"help": "width mode: attention heads per layer at the end"})
    target_ffn_dim: int = field(default=0, metadata={"help": "width mode: FFN width at the end (0: kept)"})
    target_embed_rank: int = field(
        default=0, metadata={"help": "width mode: rank of the (already factorised) word embedding at the end "
                                     "(0: kept)"}
    )
    target_layers: int = field(default=0, metadata={"help": "depth mode: layers at the end (the bottom ones)"})
    max_update: int = II("optimization.max_update")
    distributed_world_size: int = II("distributed_training.distributed_world_size")
    ddp_backend: str = II("distributed_training.ddp_backend")
    amp: bool = II("common.amp")
    store_ema: bool = II("ema.store_ema")


@register_task("glue_distillation", dataclass=GlueDistillationConfig)
class GlueDistillationTask(StudentTask):
    """Classify a text, or a pair (when ``DATA/input1`` exists), from its BPE tokens."""

    token_inputs = True

    def __init__(self, cfg, data_dictionary, label_dictionary, classes, pairs: bool = False):
        super().__init__(cfg, data_dictionary, label_dictionary, classes)
        self.input_keys = ("input0", "input1") if pairs else ("input0",)
        self.bpe = None

    def load_teacher(self):
        """The --teacher-checkpoint, loaded once: at the start of training (build_model), or on first
        use.  A trained student loaded for prediction never loads it."""
        cfg = self.cfg
        if self.online_teacher is not None or not cfg.teacher_checkpoint:
            return self.online_teacher
        half = torch.float16 if cfg.fp16 or cfg.memory_efficient_fp16 else torch.bfloat16 if cfg.bf16 else None
        teacher = OnlineTeacher(cfg.teacher_checkpoint, self.source_dictionary,
                                os.path.join(cfg.data, "input0", "dict.txt"), self.classes, half)
        for name in ("init_token", "separator_token"):
            theirs, ours = getattr(teacher.task_cfg, name, None), getattr(cfg, name)
            if theirs != ours and not (name == "separator_token" and len(self.input_keys) == 1):
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"the teacher {teacher.path} was trained with {flag} {theirs}, this task "
                                 f"has {ours}: the teacher must read its own input format")
        if teacher.model.max_positions() < cfg.max_positions:
            raise ValueError(f"the teacher {teacher.path} reads at most {teacher.model.max_positions()} tokens, "
                             f"the student's inputs have up to --max-positions {cfg.max_positions}: lower it")
        self.online_teacher = teacher
        return teacher

    def teacher_outputs(self, sample, hidden: bool = False, attention: bool = False):
        self.load_teacher()
        return super().teacher_outputs(sample, hidden=hidden, attention=attention)

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if not from_checkpoint:
            self.load_teacher()
            if self.cfg.iterative_pruning != "none":
                from ..compress.iterative import attach_pruner

                attach_pruner(model, self.cfg)
        return model

    def begin_valid_epoch(self, epoch, model):
        pruner = getattr(model, "iterative_pruning", None)
        if pruner is not None and not pruner.finished:
            logger.warning("validating before iterative pruning has finished (step %d of %d): "
                           "checkpoint_best.pt may hold a larger model than the final one",
                           pruner.done, len(pruner.steps))
        return super().begin_valid_epoch(epoch, model)

    def optimizer_step(self, optimizer, model, update_num):
        pruner = getattr(model, "iterative_pruning", None)
        if pruner is None:
            return super().optimizer_step(optimizer, model, update_num)
        if not getattr(self, "_pruning_optimizer_checked", False):  # once, at the run's first update
            from ..compress.iterative import check_optimizer

            check_optimizer(optimizer)
            self._pruning_optimizer_checked = True
        pruner.accumulate(model)
        optimizer.step()
        if pruner.after_update(model, optimizer, update_num + 1) is not None:
            from ..models.transformer_outputs import transformer_shape

            self.student_shape = transformer_shape(model)

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

    def join_inputs(self, sides: list) -> list:
        """With --init-token: <s> first, and a pair as one sequence (sentence_prediction's format)."""
        if self.cfg.init_token is None:
            return sides
        if isinstance(sides[0], list):  # raw text: lists of id tensors
            limit = self.cfg.max_positions
            return [[torch.cat(parts)[:limit] for parts in zip(*self._mark_tensors(sides))]]
        marked = [PrependTokenDataset(sides[0], self.cfg.init_token)]
        for side in sides[1:]:
            sep = self.cfg.separator_token
            marked.append(PrependTokenDataset(side, sep) if sep is not None else side)
        joined = ConcatSentencesDataset(*marked) if len(marked) > 1 else marked[0]
        return [TruncateDataset(joined, self.cfg.max_positions)]

    def _mark_tensors(self, sides):
        def prepend(token, ids):
            return [torch.cat([x.new([token]), x]) for x in ids]

        marked = [prepend(self.cfg.init_token, sides[0])]
        for side in sides[1:]:
            sep = self.cfg.separator_token
            marked.append(prepend(sep, side) if sep is not None else side)
        return marked

    def check_model_inputs(self, cfg, transformer: bool) -> None:
        if transformer and self.cfg.init_token is None:
            raise ValueError("a transformer student's classification head reads the first token: pass "
                             "--init-token 0 (<s>, as the teacher's sentence_prediction fine-tuning)")
        if not transformer and self.cfg.init_token is not None and len(self.input_keys) > 1:
            raise ValueError("--init-token joins a pair into one sequence, which only a transformer "
                             "student reads: drop it for the BiLSTM")

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
        # as the file reader cleans the data-bin's lines (fairseq's SentencePiece BPE does not)
        texts = [clean_text(t) for t in texts]
        limit = self.cfg.max_positions
        if hasattr(self.bpe, "dictionary_ids"):  # WordPiece: ids straight from the fast tokenizer
            return [torch.from_numpy(np.append(ids, d.eos()))[:limit] for ids in self.bpe.dictionary_ids(texts, d)]
        encoded = self.bpe.encode_batch(texts) if hasattr(self.bpe, "encode_batch") \
            else [self.bpe.encode(t) for t in texts]
        return [d.encode_line(x, append_eos=True, add_if_not_exist=False).long()[:limit] for x in encoded]

    def encode_text(self, text: str) -> torch.Tensor:
        return self.encode_texts([text])[0]


def glue_task(data: str, num_classes: int, **fields) -> GlueDistillationTask:
    """The task outside fairseq-train (the compression tools, tests): ``fields`` set its flags."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(GlueDistillationConfig)
    # the flags fairseq-train interpolates from other groups
    for name, value in (("classification_head_name", "sentence_classification_head"),
                        ("train_subset", "train"), ("seed", 1), ("fp16", False), ("bf16", False),
                        ("memory_efficient_fp16", False), ("cpu", False), ("max_update", 0),
                        ("distributed_world_size", 1), ("ddp_backend", "pytorch_ddp"), ("amp", False),
                        ("store_ema", False)):
        cfg[name] = value
    cfg.data, cfg.num_classes = data, num_classes
    for name, value in fields.items():
        cfg[name] = value
    return GlueDistillationTask.setup_task(cfg)
