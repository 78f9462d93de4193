"""A teacher run inside training: frozen, in eval mode, on the student's device, outside DDP.

``--teacher-checkpoint DIR_OR_PT`` (a checkpoint, or a directory with
``checkpoint_best.pt``) names a fine-tuned classifier that ``Teacher`` loads:
a ``sentence_prediction`` teacher, or any ``glue_distillation`` transformer.
It is loaded once, its parameters frozen; the task holds it, not the model,
so fairseq's DDP never wraps it and its weights are not in the student's
checkpoint.  It moves to the batch's device (and to half precision with
``--fp16``/``--bf16``) on first use and runs under ``no_grad``.

It must read the student's tokens as its own: the two dictionaries must be
the same (refused otherwise, naming both files), and so must the classes.
"""

import logging
import os
from typing import Optional

import torch

from ..models.transformer_outputs import TransformerOutputs, classifier_outputs, transformer_shape

logger = logging.getLogger(__name__)


def teacher_checkpoint_path(path: str) -> str:
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoint_best.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"teacher checkpoint not found: {path}")
    return path


class OnlineTeacher:
    def __init__(self, path: str, dictionary, dictionary_path: str, classes, half: Optional[torch.dtype] = None):
        from ..inference.teacher import Teacher

        path = teacher_checkpoint_path(path)
        teacher = Teacher(os.path.dirname(path), os.path.basename(path), device="cpu")
        self.path = path
        teacher_dict_path = self._dictionary_path(teacher, path)
        if teacher.task.source_dictionary.symbols != dictionary.symbols:
            raise ValueError(f"the teacher's dictionary {teacher_dict_path} differs from the student's "
                             f"{dictionary_path}: binarize the student's data with --srcdict {teacher_dict_path}")
        if list(teacher.classes) != list(classes):
            raise ValueError(f"the teacher {path} predicts classes {list(teacher.classes)}, the student's "
                             f"data-bin has {list(classes)}: use the label dictionary the teacher was trained with")
        self.model = teacher.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.head = teacher.head
        self.task_cfg = teacher.cfg.task  # its input format (init_token, separator_token)
        self.dtype = half
        self.shape = transformer_shape(self.model)
        self._device = None
        logger.info("online teacher %s: %d layers, width %d, %s parameters", path, self.shape["layers"],
                    self.shape["dim"], f"{sum(p.numel() for p in self.model.parameters()):,}")

    @staticmethod
    def _dictionary_path(teacher, path: str) -> str:
        data = os.path.dirname(path)
        if not os.path.exists(os.path.join(data, "input0", "dict.txt")):
            data = teacher.cfg.task.data
        return os.path.join(data, "input0", "dict.txt")

    def to(self, device) -> None:
        if self._device != device:
            self.model.to(device)
            if self.dtype is not None and device.type == "cuda":
                self.model.to(self.dtype)
            self._device = device

    @torch.no_grad()
    def __call__(self, src_tokens, hidden: bool = False, attention: bool = False) -> TransformerOutputs:
        self.to(src_tokens.device)
        self.model.eval()  # fairseq's trainer.train() reaches only the student
        out = classifier_outputs(self.model, src_tokens, self.head, hidden=hidden, attention=attention)
        out.logits = out.logits.float()
        if out.hidden_states is not None:
            out.hidden_states = [h.float() for h in out.hidden_states]
        if out.attentions is not None:
            out.attentions = [a.float() for a in out.attentions]
        return out


class MaskedLMTeacher:
    """A masked-LM teacher run inside training (DistilBERT): token logits and last hidden states.

    ``path``: a fairseq RoBERTa-style checkpoint with its LM head (``masked_lm``, or an import by
    ``distill-import-hf`` of a Hugging Face masked LM).  Frozen, in eval mode, moved to the batch's
    device on first use; its dictionary must be the student's.
    """

    def __init__(self, path: str, dictionary, dictionary_path: str, data: str):
        from fairseq import checkpoint_utils

        path = teacher_checkpoint_path(path)
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [path], arg_overrides={"data": data})  # its task reads the student's dictionary folder
        self.model = models[0].eval()
        self.path = path
        lm_head = getattr(self.model.encoder, "lm_head", None)
        if lm_head is None:
            raise ValueError(f"the teacher {path} has no masked-LM head: distil from a masked LM "
                             f"(fairseq's masked_lm, or distill-import-hf of a model with its LM head)")
        if self.model.encoder.sentence_encoder.embed_tokens.num_embeddings != len(dictionary) or (
                task.source_dictionary.symbols != dictionary.symbols):
            raise ValueError(f"the teacher {path} was trained with another dictionary than the student's "
                             f"{dictionary_path}: binarize the corpus with the teacher's dict.txt")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.shape = transformer_shape(self.model)
        self._device = None
        logger.info("masked-LM teacher %s: %d layers, width %d", path, self.shape["layers"], self.shape["dim"])

    @torch.no_grad()
    def __call__(self, src_tokens, positions=None):
        """(logits [N, V] at ``positions`` (a [B, T] mask; all: [B, T, V]), last hidden state [B, T, D])."""
        if self._device != src_tokens.device:
            self.model.to(src_tokens.device)
            self._device = src_tokens.device
        self.model.eval()
        logits, extra = self.model(src_tokens, features_only=False, return_all_hiddens=True,
                                   masked_tokens=positions)
        return logits.float(), extra["inner_states"][-1].transpose(0, 1).float()
