"""Teacher logits: a fine-tuned fairseq classifier run over raw text.

The teacher is a ``sentence_prediction`` checkpoint (``hf_bert`` or fairseq
RoBERTa).  Its directory holds the checkpoint and either the data-bin
dictionaries (``input0/dict.txt``, ``label/dict.txt``) or a checkpoint whose
saved ``task.data`` still points at them; the BPE is the one saved with the
checkpoint (``--bpe wordpiece --wordpiece-vocab ...`` at fine-tuning), or
``tokenizer.json``/``vocab.txt`` found in the directory.

Inputs are encoded as fine-tuning encoded them (``init_token``,
``separator_token`` for pairs), truncated to the model's positions (or a shorter ``max_positions``; with
``keep_head``, the text's first ``keep_head`` tokens and its tail, as
``distill-bpe-encode --max-tokens --keep-head`` cut the fine-tuning data),
sorted by
length into batches of at most ``batch_tokens`` padded tokens
(``length_batches``), and the logits come back in input order.  ``device``:
auto (CUDA when available), cpu, cuda or cuda:N.
"""

import logging
import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..preprocess.truncation import check_window, head_tail
from .devices import resolve_device

logger = logging.getLogger(__name__)

Text = Union[str, Tuple[str, str]]


def length_batches(lengths: Sequence[int], batch_tokens: int) -> List[np.ndarray]:
    """Indices sorted by length (stable), cut into batches whose padded size (longest x count)
    stays within ``batch_tokens``; a longer sequence alone makes a batch."""
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    batches, start = [], 0
    while start < len(order):
        end, longest = start + 1, lengths[order[start]]
        while end < len(order):
            longest = max(longest, lengths[order[end]])
            if longest * (end - start + 1) > batch_tokens:
                break
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def pad_right(tokens: Sequence[torch.Tensor], pad: int) -> torch.Tensor:
    """fairseq's ``collate_tokens(tokens, pad)`` (padding on the right), without its row loop."""
    lengths = torch.tensor([len(t) for t in tokens])
    out = torch.full((len(tokens), int(lengths.max())), pad, dtype=tokens[0].dtype)
    out[torch.arange(out.shape[1]) < lengths[:, None]] = torch.cat(list(tokens)).to(out.dtype)
    return out


class Teacher:
    def __init__(self, checkpoint_dir: str, checkpoint_file: str = "checkpoint_best.pt",
                 device: Optional[str] = None, max_positions: Optional[int] = None,
                 keep_head: Optional[int] = None, data: Optional[str] = None):
        from fairseq import checkpoint_utils
        from fairseq.data import encoders

        import user_dir  # noqa: F401  (registers hf_bert and the wordpiece BPE)

        self.device = resolve_device(device)  # a missing GPU is refused before the load
        path = os.path.join(checkpoint_dir, checkpoint_file)
        if not os.path.exists(path):
            raise FileNotFoundError(f"teacher checkpoint not found: {path}")
        overrides = {}
        if data is not None:  # the data-bin the caller names (distill-export-hf --data-bin)
            overrides["data"] = os.path.abspath(data)
        elif os.path.exists(os.path.join(checkpoint_dir, "input0", "dict.txt")):
            overrides["data"] = os.path.abspath(checkpoint_dir)
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides)
        self.model, self.cfg, self.task = models[0].eval(), cfg, task
        self.model.to(self.device)
        if cfg.bpe is not None:
            self.bpe = encoders.build_bpe(cfg.bpe)
        else:
            from ..encoders.wordpiece import WordPieceBPE, WordPieceConfig

            self.bpe = WordPieceBPE(WordPieceConfig(wordpiece_vocab=checkpoint_dir))
        self.head = getattr(cfg.criterion, "classification_head_name", "sentence_classification_head")
        labels = task.label_dictionary
        self.classes = labels.symbols[labels.nspecial:labels.nspecial + cfg.task.num_classes]
        self.max_positions = min(cfg.task.max_positions, self.model.max_positions())
        if max_positions is not None:
            if not 2 < max_positions <= self.max_positions:
                raise ValueError(f"max_positions must be 3 to the teacher's {self.max_positions}, "
                                 f"got {max_positions}")
            self.max_positions = max_positions
        # the window of the text's own tokens: <s> (init_token) and </s> take the other positions
        self.init_tokens = int(cfg.task.init_token is not None)
        check_window(self.max_positions - 1 - self.init_tokens, keep_head, "the window")
        self.keep_head = keep_head

    def encode(self, text: Text) -> torch.Tensor:
        """Token ids as fine-tuning saw them: [init] a </s> ([sep] b </s>), cut to ``max_positions``."""
        return self.truncate(self.encode_full(text))

    def encode_all(self, texts: Sequence[Text]) -> Tuple[List[torch.Tensor], int]:
        """The ids of every text and how many of them were cut to ``max_positions``."""
        full = self.encode_full_all(texts)
        return [self.truncate(ids) for ids in full], sum(len(ids) > self.max_positions for ids in full)

    def truncate(self, ids: torch.Tensor) -> torch.Tensor:
        if len(ids) <= self.max_positions:
            return ids
        if self.keep_head is None:  # keep the end-of-sentence token
            return torch.cat([ids[: self.max_positions - 1], ids[-1:]])
        # head + tail of the text between <s> and </s> (single texts; for pairs the tail is the second's)
        i = self.init_tokens
        body = head_tail(ids[i:-1], self.max_positions - 1 - i, self.keep_head)
        return torch.cat([ids[:i], body, ids[-1:]])

    def encode_full(self, text: Text) -> torch.Tensor:
        """``encode`` before truncation."""
        return self.encode_full_all([text])[0]

    def encode_full_all(self, texts: Sequence[Text]) -> List[torch.Tensor]:
        """``encode_full`` of every text; a WordPiece teacher tokenizes them all in one batch."""
        d = self.task.source_dictionary
        sides = [[t] if isinstance(t, str) else list(t) for t in texts]
        flat = [side for s in sides for side in s]
        if hasattr(self.bpe, "dictionary_ids"):
            pieces = iter(self.bpe.dictionary_ids(flat, d))
        else:  # any other fairseq BPE: its string tokens through the dictionary
            pieces = iter(d.encode_line(self.bpe.encode(x), append_eos=False, add_if_not_exist=False).long().numpy()
                          for x in flat)
        init, sep = self.cfg.task.init_token, self.cfg.task.separator_token
        out = []
        for s in sides:
            parts = []
            for i in range(len(s)):
                lead = init if i == 0 else sep
                parts += [[lead] if lead is not None else [], next(pieces), [d.eos()]]
            out.append(torch.from_numpy(np.concatenate(parts).astype(np.int64)))
        return out

    @torch.inference_mode()
    def logits_of_tokens(self, tokens: Sequence[torch.Tensor], batch_tokens: int = 8192) -> np.ndarray:
        pad = self.task.source_dictionary.pad()
        out = np.zeros((len(tokens), len(self.classes)), dtype=np.float32)
        order, results = [], []
        for idx in length_batches([len(t) for t in tokens], batch_tokens):
            batch = pad_right([tokens[i] for i in idx], pad).to(self.device, non_blocking=True)
            logits, _ = self.model(batch, features_only=True, classification_head_name=self.head)
            order.append(idx)
            results.append(logits.float())
        # one copy back at the end: on a GPU the next batch is prepared while this one runs
        if results:
            out[np.concatenate(order)] = torch.cat(results).cpu().numpy()
        return out

    def logits(self, texts: Sequence[Text], batch_tokens: int = 8192) -> np.ndarray:
        return self.logits_of_tokens(self.encode_all(texts)[0], batch_tokens)

    def predict(self, texts: Sequence[Text], batch_tokens: int = 8192) -> List[str]:
        return [self.classes[i] for i in self.logits(texts, batch_tokens).argmax(axis=1)]
