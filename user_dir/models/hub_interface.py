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
from typing import List, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from fairseq.data import data_utils

from ..data.ngrams import Featurizer

Text = Union[str, Sequence[str]]


class StudentHubInterface(nn.Module):
    """``fold`` (default True): a DAN's first head layer is folded into its n-gram
    table where that computes the same function (``fold_first_layer``).  For
    the demo's DAN (310k x 384 table, 128-unit head) raw text to label goes
    from 112k to 137k sentences/s with the same predictions; the fold is one
    pass over the table at load (0.15 s there; it grows with rows x width x
    head width).
    """

    def __init__(self, cfg, task, model, fold: bool = True):
        super().__init__()
        self.cfg = cfg
        self.task = task
        self.model = model
        self.model.eval()
        d = task.source_dictionary
        self.token_inputs = getattr(task, "token_inputs", False)
        if self.token_inputs:
            from fairseq.data import encoders

            self.bpe = encoders.build_bpe(cfg.bpe)
            if self.bpe is None:
                raise ValueError("the checkpoint was trained without --bpe, so raw text cannot be "
                                 "tokenized as its data-bin was: retrain with --bpe wordpiece or "
                                 "--bpe sentencepiece (the encoding used before fairseq-preprocess)")
        elif task.ngram_settings is None:
            raise ValueError(
                f"{os.path.join(task.cfg.data, 'input0', 'ngrams.json')} not found: copy the "
                f"VOCAB.json written by distill-ngram-dict there to predict from raw text"
            )
        else:
            self.featurize = Featurizer(task.ngram_settings, d.symbols, d.nspecial, task.cfg.max_positions)
        self.classes: List[str] = list(task.classes)
        self.head = task.cfg.classification_head_name
        self.num_inputs = len(task.input_keys)
        # the trained model's size, before any folding below changes its shapes
        self.num_parameters = sum(p.numel() for p in model.parameters())
        if fold and hasattr(model, "fold_first_layer"):
            model.fold_first_layer(self.head)
        self.register_buffer("_float_tensor", torch.tensor([0], dtype=torch.float))

    @classmethod
    def from_pretrained(cls, model_dir: str, checkpoint_file: str = "checkpoint_best.pt",
                        data_name_or_path: str = ".", fold: bool = True,
                        **overrides) -> "StudentHubInterface":
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
        return cls(cfg, task, models[0], fold=fold)

    @property
    def device(self):
        return self._float_tensor.device

    def _split(self, texts: Sequence[Text]) -> List[List[str]]:
        if self.num_inputs == 1:
            if any(not isinstance(t, str) for t in texts):
                raise ValueError("this model classifies single texts: pass strings")
            return [list(texts)]
        if any(isinstance(t, str) or len(t) != 2 for t in texts):
            raise ValueError("this model classifies pairs: pass (text_a, text_b) tuples")
        return [[t[0] for t in texts], [t[1] for t in texts]]

    def _ids(self, texts: List[str]) -> List[torch.Tensor]:
        """Input ids of each text: its n-gram features, or its BPE tokens and </s>."""
        if not self.token_inputs:
            return [torch.from_numpy(x) for x in self.featurize.batch(texts)]
        d = self.task.source_dictionary
        encoded = self.bpe.encode_batch(texts) if hasattr(self.bpe, "encode_batch") \
            else [self.bpe.encode(t) for t in texts]
        limit = self.task.cfg.max_positions
        return [d.encode_line(x, append_eos=True, add_if_not_exist=False).long()[:limit] for x in encoded]

    def encode(self, texts: Sequence[Text]) -> dict:
        """The model's ``net_input`` for a batch of raw texts."""
        pad = self.task.source_dictionary.pad()
        net_input = {}
        for i, side in enumerate(self._split(texts)):
            ids = self._ids(side)
            suffix = "" if i == 0 else str(i)
            net_input["src_tokens" + suffix] = data_utils.collate_tokens(ids, pad).to(self.device)
            net_input["src_lengths" + suffix] = torch.tensor([len(x) for x in ids], device=self.device)
        return net_input

    @property
    def _flat_path(self) -> bool:
        return (self.num_inputs == 1 and not self.token_inputs
                and self.model.encoder.mode in ("mean", "sum"))

    def _batch_logits(self, texts):
        if self._flat_path:  # no padding: ids back to back + per-text counts
            ids, counts = self.featurize.flat(list(texts))
            pooled = self.model.encoder.pool_flat(torch.from_numpy(ids).to(self.device),
                                                  torch.from_numpy(counts).to(self.device))
            return self.model.classification_heads[self.head](pooled)
        x, _ = self.model(**self.encode(texts), features_only=True, classification_head_name=self.head)
        return x

    @torch.inference_mode()
    def logits(self, texts: Sequence[Text], batch_size: int = 1024) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        # token models: batches of similar lengths (little padding), original order restored
        order = np.argsort([len(t) if isinstance(t, str) else sum(map(len, t)) for t in texts],
                           kind="stable") if self.token_inputs else np.arange(len(texts))
        out = []
        for start in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[start:start + batch_size]]
            out.append(self._batch_logits(batch).float().cpu().numpy())
        logits = np.empty((len(texts), len(self.classes)), dtype=np.float32)
        logits[order] = np.concatenate(out)
        return logits

    def predict_proba(self, texts: Sequence[Text], batch_size: int = 1024) -> np.ndarray:
        logits = self.logits(texts, batch_size)
        return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()

    def predict(self, texts: Sequence[Text], batch_size: int = 1024) -> List[str]:
        return [self.classes[i] for i in self.logits(texts, batch_size).argmax(axis=-1)]
