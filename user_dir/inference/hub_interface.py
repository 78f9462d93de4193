"""Raw text in, labels and probabilities out, for a trained student.

    from user_dir.models.dan import FeatureBasedLinearModel
    dan = FeatureBasedLinearModel.from_pretrained("checkpoints", "checkpoint_best.pt", "data-bin")
    dan.predict(["a gorgeous , witty film"])          # -> ['1']
    dan.predict_proba(["a gorgeous , witty film"])    # -> array([[0.03, 0.97]])

For pair models, pass ``(text_a, text_b)`` tuples.  A DAN (n-gram task)
featurizes with ``data-bin/input0/ngrams.json`` (the ``VOCAB.json`` of
``distill-ngram-dict``) and ``input0/dict.txt``; a token student
(``glue_distillation``, e.g. the BiLSTM) applies the checkpoint's ``--bpe``
and ``input0/dict.txt`` exactly as ``fairseq-preprocess`` saw them.
"""

import os
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from .devices import resolve_device

Text = Union[str, Sequence[str]]

class StudentHubInterface(nn.Module):
    """``fold`` (default True): a DAN's first head layer is folded into its n-gram
    table where that computes the same function (``fold_first_layer``): one
    matrix product less per text, the same predictions, for one pass over the
    table at load (it grows with rows x width x head width).  ``device`` (auto, cpu, cuda, cuda:N; None leaves the model
    where it is) moves the model before the fold.

    ``table_dtype`` ("float16" or "bfloat16"; None keeps float32): a single-text
    mean- or sum-pooled DAN keeps its (folded) n-gram table in half precision
    and pools in it, the rest in float32.  The table is most of the memory that
    prediction reads (a row per feature of every text), so halving it speeds
    prediction on a cache-bound CPU; outputs move by about 1e-4 (measured in
    the README), so an argmax may flip at a near tie.
    """

    TABLE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}

    def __init__(self, cfg, task, model, fold: bool = True, device: Optional[str] = None,
                 table_dtype: Optional[str] = None):
        super().__init__()
        self.cfg = cfg
        self.task = task
        self.model = model
        self.model.eval()
        self.token_inputs = getattr(task, "token_inputs", False)
        if self.token_inputs:
            task.set_bpe(cfg.bpe)
        else:
            task.featurizer  # noqa: B018  (refuses a data-bin without ngrams.json now, not at predict)
        self.classes: List[str] = list(task.classes)
        self.head = task.cfg.classification_head_name
        self.num_inputs = len(task.input_keys)
        # the trained model's size, before any folding below changes its shapes
        self.num_parameters = sum(p.numel() for p in model.parameters())
        if device is not None:  # before folding: the fold runs where the model will
            model.to(resolve_device(device))
        if fold and hasattr(model, "fold_first_layer"):
            model.fold_first_layer(self.head)
        if table_dtype is not None:
            if table_dtype not in self.TABLE_DTYPES:
                raise ValueError(f"table_dtype {table_dtype!r}: choose from {sorted(self.TABLE_DTYPES)}")
            if not self._flat_path:
                raise ValueError("table_dtype needs a DAN over single texts with mean or sum pooling")
            table = model.encoder.embed_tokens.weight
            table.data = table.data.to(self.TABLE_DTYPES[table_dtype])
        self.register_buffer("_float_tensor", torch.tensor([0], dtype=torch.float,
                                                           device=next(model.parameters()).device))

    @classmethod
    def from_pretrained(cls, model_dir: str, checkpoint_file: str = "checkpoint_best.pt",
                        data_name_or_path: str = ".", fold: bool = True, device: Optional[str] = None,
                        table_dtype: Optional[str] = None, **overrides) -> "StudentHubInterface":
        """``device``: auto, cpu, cuda or cuda:N (None: stay on CPU, where the checkpoint loads)."""
        from fairseq import checkpoint_utils

        data = data_name_or_path
        if not os.path.isabs(data) and os.path.isdir(os.path.join(model_dir, data)):
            data = os.path.join(model_dir, data)
        path = checkpoint_file if os.path.isabs(checkpoint_file) else os.path.join(model_dir, checkpoint_file)
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [path], arg_overrides={"data": os.path.abspath(data), **overrides}
        )
        return cls(cfg, task, models[0], fold=fold, device=device, table_dtype=table_dtype)

    @property
    def device(self):
        return self._float_tensor.device

    def encode(self, texts: Sequence[Text]) -> dict:
        """The model's ``net_input`` for a batch of raw texts."""
        return self.task.build_batch(texts, self.device)

    @property
    def _flat_path(self) -> bool:
        return (self.num_inputs == 1 and not self.token_inputs
                and self.model.encoder.mode in ("mean", "sum"))

    def _batch_logits(self, texts):
        if self._flat_path:  # no padding: ids back to back + per-text counts
            ids, counts = self.task.encode_flat(texts)
            pooled = self.model.encoder.pool_flat(ids.to(self.device), counts.to(self.device))
            return self.model.classification_heads[self.head](pooled.float())
        x, _ = self.model(**self.encode(texts), features_only=True, classification_head_name=self.head)
        return x

    @torch.inference_mode()
    def logits(self, texts: Sequence[Text], batch_size: int = 1024, batch_tokens: int = 8192) -> np.ndarray:
        """Token models take batches of similar lengths of at most ``batch_tokens`` padded tokens
        (as the teacher's ``length_batches``); n-gram models ``batch_size`` texts at a time."""
        if not len(texts):
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        if self.token_inputs:
            from .teacher import length_batches

            inputs = self.task.encode_examples(texts)
            lengths = [sum(len(side[i]) for side in inputs) for i in range(len(texts))]
            logits = np.empty((len(texts), len(self.classes)), dtype=np.float32)
            for rows in length_batches(lengths, batch_tokens):
                net_input = self.task.collate_ids(inputs, rows, self.device)
                x, _ = self.model(**net_input, features_only=True, classification_head_name=self.head)
                logits[rows] = x.float().cpu().numpy()
            return logits
        out = [self._batch_logits(texts[start:start + batch_size]).float().cpu().numpy()
               for start in range(0, len(texts), batch_size)]
        return np.concatenate(out)

    def predict_proba(self, texts: Sequence[Text], batch_size: int = 1024) -> np.ndarray:
        logits = self.logits(texts, batch_size)
        return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()

    def predict(self, texts: Sequence[Text], batch_size: int = 1024) -> List[str]:
        return [self.classes[i] for i in self.logits(texts, batch_size).argmax(axis=-1)]
