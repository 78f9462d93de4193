"""``--bpe wordpiece``: BERT's WordPiece, exactly as the Hugging Face tokenizer.

With a ``tokenizer.json`` it runs any Hugging Face fast tokenizer, so an
imported RoBERTa uses it too (its byte-level BPE tokens are its dict.txt).

Built on the ``tokenizers`` package from the model's ``tokenizer.json`` (the
fast tokenizer itself: normalization, lower-casing, accent stripping, Chinese
characters, as configured) or, failing that, its ``vocab.txt``.  ``encode``
returns space-separated WordPiece tokens named as in the fairseq dictionary
that ``distill-import-hf`` writes: BERT's ``[UNK]``, ``[CLS]``, ``[SEP]``,
``[PAD]``, ``[MASK]`` become fairseq's ``<unk>``, ``<s>``, ``</s>``,
``<pad>``, ``<mask>``.
"""

import os
from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np

from fairseq.data.encoders import register_bpe
from fairseq.dataclass import FairseqDataclass

from ..preprocess.text_io import clean_text

_ENCODE_CHUNK = 8192  # lines per encode_batch: parallel enough, and bounded memory
BERT_TO_FAIRSEQ = {"[CLS]": "<s>", "[PAD]": "<pad>", "[SEP]": "</s>", "[UNK]": "<unk>", "[MASK]": "<mask>"}
FAIRSEQ_TO_BERT = {v: k for k, v in BERT_TO_FAIRSEQ.items()}


@dataclass
class WordPieceConfig(FairseqDataclass):
    wordpiece_vocab: str = field(
        default="???", metadata={"help": "tokenizer.json or vocab.txt of the Hugging Face model "
                                         "(distill-import-hf copies both next to model.pt)"}
    )
    wordpiece_lowercase: bool = field(
        default=True, metadata={"help": "lower-case (only used with a vocab.txt; tokenizer.json says itself)"}
    )


def load_wordpiece(path: str, lowercase: bool = True):
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    if os.path.isdir(path):
        for name in ("tokenizer.json", "vocab.txt"):
            if os.path.exists(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
    if not os.path.isfile(path):
        raise FileNotFoundError(f"WordPiece vocabulary not found: {path} (tokenizer.json or vocab.txt)")
    if path.endswith(".json"):
        tok = Tokenizer.from_file(path)
    else:
        tok = BertWordPieceTokenizer(path, lowercase=lowercase)
    tok.no_truncation()
    tok.no_padding()
    return tok


@register_bpe("wordpiece", dataclass=WordPieceConfig)
class WordPieceBPE:
    def __init__(self, cfg):
        self.tokenizer = load_wordpiece(cfg.wordpiece_vocab, cfg.wordpiece_lowercase)
        self._table = None  # (dictionary, tokenizer id -> dictionary id), see dictionary_ids

    def _tokens(self, encoding):
        return [BERT_TO_FAIRSEQ.get(t, t) for t in encoding.tokens]

    def encode(self, x: str) -> str:
        x = clean_text(x)  # HTML line breaks are spaces, as the file readers make them
        return " ".join(self._tokens(self.tokenizer.encode(x, add_special_tokens=False)))

    def encode_batch(self, lines):
        encodings = self.tokenizer.encode_batch([clean_text(x) for x in lines], add_special_tokens=False)
        return [" ".join(self._tokens(e)) for e in encodings]

    def dictionary_ids(self, lines: Sequence[str], dictionary) -> List[np.ndarray]:
        """``dictionary.encode_line(self.encode(x), append_eos=False)`` of every line, as int64
        arrays: the fast tokenizer takes all lines at once (in parallel), and its ids map to the
        dictionary's through a table built once, instead of joining and splitting token strings."""
        if self._table is None or self._table[0] is not dictionary:
            vocab = self.tokenizer.get_vocab(with_added_tokens=True)
            table = np.full(max(vocab.values()) + 1, dictionary.unk(), dtype=np.int64)
            for token, i in vocab.items():
                table[i] = dictionary.index(BERT_TO_FAIRSEQ.get(token, token))
            self._table = (dictionary, table)
        table = self._table[1]
        out = []
        for i in range(0, len(lines), _ENCODE_CHUNK):  # the tokenizer's encodings held a chunk at a time
            chunk = [clean_text(x) for x in lines[i:i + _ENCODE_CHUNK]]
            out += [table[np.asarray(e.ids, dtype=np.int64)]
                    for e in self.tokenizer.encode_batch(chunk, add_special_tokens=False)]
        return out

    def decode(self, x: str) -> str:
        ids = [self.tokenizer.token_to_id(FAIRSEQ_TO_BERT.get(t, t)) for t in x.split()]
        return self.tokenizer.decode([i for i in ids if i is not None])

    def is_beginning_of_word(self, x: str) -> bool:
        return not x.startswith("##")
