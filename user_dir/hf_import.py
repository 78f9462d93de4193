"""Hugging Face BERT or RoBERTa directory -> fairseq checkpoint of the ``hf_bert`` model.

What changes on the way for BERT (RoBERTa already uses fairseq's vocabulary
order and position offset, since it was converted from fairseq):

* vocabulary order: fairseq's dictionary begins with ``<s> <pad> </s> <unk>``;
  BERT's ``[CLS] [PAD] [SEP] [UNK]`` take those places (``[MASK]`` becomes
  ``<mask>``), every other token keeps its BERT order, and the embedding rows
  are permuted to match.  ``dict.txt`` is written accordingly;
* positions: fairseq's learned positions start at ``padding_idx + 1 = 2``, so
  BERT's row p goes to row p + 2;
* token types: every fairseq input has type 0, so BERT's type-0 embedding is
  added to every position row (exact for single sentences; the second text of
  a pair gets type 0 instead of BERT's type 1);
* LayerNorm epsilon: carried as ``--layer-norm-eps``.

The output directory holds ``model.pt``, ``dict.txt``, the tokenizer files
(for ``--bpe wordpiece``), ``config.json`` and ``model-args.txt``: the
fairseq-train flags that rebuild this architecture for fine-tuning.
"""

import json
import logging
import os
import shutil
import warnings
from typing import Dict, List

import torch

from .data.text_io import atomic_path, read_lines
from .encoders.wordpiece import BERT_TO_FAIRSEQ

logger = logging.getLogger(__name__)

USER_DIR = os.path.dirname(os.path.abspath(__file__))
FAIRSEQ_SPECIAL_ORDER = ["[CLS]", "[PAD]", "[SEP]", "[UNK]"]  # -> <s> <pad> </s> <unk>
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_accurate", "gelu_pytorch_tanh": "gelu_accurate",
               "relu": "relu", "tanh": "tanh"}
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json")


def load_hf_state(hf_dir: str) -> Dict[str, torch.Tensor]:
    st, pt = os.path.join(hf_dir, "model.safetensors"), os.path.join(hf_dir, "pytorch_model.bin")
    if os.path.exists(st):
        from safetensors.torch import load_file

        state = load_file(st)
    elif os.path.exists(pt):
        state = torch.load(pt, map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{hf_dir}: neither model.safetensors nor pytorch_model.bin")
    # *ForSequenceClassification & co. keep the encoder under "bert." / "roberta."
    for prefix in ("bert.", "roberta."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def fairseq_vocab_order(vocab: List[str], path: str) -> List[int]:
    """BERT ids in fairseq dictionary order."""
    index = {}
    for i, tok in enumerate(vocab):
        if tok in index:
            raise ValueError(f"{path}: line {i + 1} repeats token {tok!r}")
        index[tok] = i
    missing = [t for t in FAIRSEQ_SPECIAL_ORDER if t not in index]
    if missing:
        raise ValueError(f"{path} lacks BERT's special tokens {missing}")
    specials = [index[t] for t in FAIRSEQ_SPECIAL_ORDER]
    return specials + [i for i in range(len(vocab)) if i not in set(specials)]


def roberta_vocab(hf_dir: str) -> List[str]:
    """Tokens in id order from vocab.json (or tokenizer.json); fairseq's specials come first."""
    path = os.path.join(hf_dir, "vocab.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    else:
        path = os.path.join(hf_dir, "tokenizer.json")
        with open(path, encoding="utf-8") as f:
            index = json.load(f)["model"]["vocab"]
    tokens = [None] * len(index)
    for tok, i in index.items():
        if not 0 <= i < len(tokens) or tokens[i] is not None:
            raise ValueError(f"{path}: ids are not 0..{len(tokens) - 1} without gaps")
        tokens[i] = tok
    if tokens[:4] != ["<s>", "<pad>", "</s>", "<unk>"]:
        raise ValueError(f"{path}: ids 0-3 are {tokens[:4]}, not fairseq's <s> <pad> </s> <unk>")
    return tokens


def model_flags(config: dict) -> List[str]:
    act = config.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise ValueError(f"hidden_act {act!r} has no fairseq equivalent")
    return [
        "--arch", "hf_bert",
        "--encoder-layers", str(config["num_hidden_layers"]),
        "--encoder-embed-dim", str(config["hidden_size"]),
        "--encoder-ffn-embed-dim", str(config["intermediate_size"]),
        "--encoder-attention-heads", str(config["num_attention_heads"]),
        # RoBERTa's table already has fairseq's 2 leading rows (padding_idx + 1)
        "--max-positions", str(config["max_position_embeddings"] - (2 if config["model_type"] == "roberta" else 0)),
        "--activation-fn", ACTIVATIONS[act],
        "--dropout", str(config.get("hidden_dropout_prob", 0.1)),
        "--attention-dropout", str(config.get("attention_probs_dropout_prob", 0.1)),
        "--layer-norm-eps", repr(float(config.get("layer_norm_eps", 1e-12))),
    ]


def convert_state(hf: Dict[str, torch.Tensor], order: List[int], layers: int,
                  target: Dict[str, torch.Tensor], position_offset: int = 2) -> Dict[str, torch.Tensor]:
    """fairseq state dict: ``target`` (a fresh model's) with the BERT weights put in."""
    out = dict(target)
    enc = "encoder.sentence_encoder."
    out[enc + "embed_tokens.weight"] = hf["embeddings.word_embeddings.weight"][order].clone()
    pos = out[enc + "embed_positions.weight"].clone()
    bert_pos = hf["embeddings.position_embeddings.weight"]
    type0 = hf.get("embeddings.token_type_embeddings.weight")
    pos[position_offset:position_offset + len(bert_pos)] = bert_pos + (type0[0] if type0 is not None else 0)
    out[enc + "embed_positions.weight"] = pos
    out[enc + "layernorm_embedding.weight"] = hf["embeddings.LayerNorm.weight"]
    out[enc + "layernorm_embedding.bias"] = hf["embeddings.LayerNorm.bias"]
    names = {
        "attention.self.query": "self_attn.q_proj",
        "attention.self.key": "self_attn.k_proj",
        "attention.self.value": "self_attn.v_proj",
        "attention.output.dense": "self_attn.out_proj",
        "attention.output.LayerNorm": "self_attn_layer_norm",
        "intermediate.dense": "fc1",
        "output.dense": "fc2",
        "output.LayerNorm": "final_layer_norm",
    }
    for i in range(layers):
        for src, dst in names.items():
            for p in ("weight", "bias"):
                out[f"{enc}layers.{i}.{dst}.{p}"] = hf[f"encoder.layer.{i}.{src}.{p}"]
    # the MLM head, when the checkpoint has one (BertForMaskedLM / BertForPreTraining)
    if "lm_head.dense.weight" in hf:  # RobertaForMaskedLM
        for name in ("dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias"):
            out["encoder.lm_head." + name] = hf["lm_head." + name]
        out["encoder.lm_head.bias"] = hf["lm_head.bias"][order]
    if "cls.predictions.transform.dense.weight" in hf:
        pre = "cls.predictions."
        out["encoder.lm_head.dense.weight"] = hf[pre + "transform.dense.weight"]
        out["encoder.lm_head.dense.bias"] = hf[pre + "transform.dense.bias"]
        out["encoder.lm_head.layer_norm.weight"] = hf[pre + "transform.LayerNorm.weight"]
        out["encoder.lm_head.layer_norm.bias"] = hf[pre + "transform.LayerNorm.bias"]
        out["encoder.lm_head.bias"] = hf[pre + "bias"][order]
    for k, v in out.items():
        if v.shape != target[k].shape:
            raise ValueError(f"{k}: the Hugging Face weights give shape {tuple(v.shape)}, "
                             f"the fairseq model needs {tuple(target[k].shape)}")
    return out


def import_hf(hf_dir: str, output_dir: str) -> dict:
    """Convert ``hf_dir`` into ``output_dir``; return a summary."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    with open(os.path.join(hf_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    model_type = config.get("model_type")
    if model_type == "bert":
        vocab_path = os.path.join(hf_dir, "vocab.txt")
        vocab = read_lines(vocab_path)
        while vocab and vocab[-1] == "":
            vocab.pop()
    elif model_type == "roberta":
        vocab_path = os.path.join(hf_dir, "vocab.json")
        vocab = roberta_vocab(hf_dir)
    else:
        raise ValueError(f"{hf_dir}/config.json: model_type {model_type!r}; BERT and RoBERTa are converted")
    hf = load_hf_state(hf_dir)
    rows = hf["embeddings.word_embeddings.weight"].shape[0]
    if rows != len(vocab):
        raise ValueError(f"{vocab_path} has {len(vocab)} tokens but the embedding has {rows} rows")
    order = fairseq_vocab_order(vocab, vocab_path) if model_type == "bert" else list(range(rows))

    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "dict.txt"), "w", encoding="utf-8", newline="\n") as f:
        for i in order[4:]:
            name = BERT_TO_FAIRSEQ.get(vocab[i], vocab[i]) if model_type == "bert" else vocab[i]
            f.write(f"{name} 1\n")
    flags = model_flags(config)
    with warnings.catch_warnings():  # hydra's deprecation notices from fairseq's config code
        warnings.simplefilter("ignore")
        args = options.parse_args_and_arch(options.get_training_parser(), [
            output_dir, "--task", "masked_lm", "--user-dir", USER_DIR, "--criterion", "masked_lm", *flags,
        ])
        cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(args)
    if len(task.source_dictionary) != rows:
        raise ValueError(f"the fairseq dictionary has {len(task.source_dictionary)} entries for {rows} "
                         f"BERT tokens: a token of {vocab_path} is not usable in dict.txt")
    model = task.build_model(args)
    state = convert_state(hf, order, config["num_hidden_layers"], model.state_dict(),
                          position_offset=2 if model_type == "bert" else 0)
    model.load_state_dict(state, strict=True)
    checkpoint = {"cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "args": None,
                  "model": model.state_dict(), "extra_state": {},
                  # fine-tuning restores this with --reset-optimizer, as fairseq's RoBERTa recipe
                  "optimizer_history": [{"criterion_name": "MaskedLmLoss", "optimizer_name": "none",
                                         "lr_scheduler_state": {"best": None}, "num_updates": 0}],
                  "last_optimizer_state": None}
    tmp = atomic_path(os.path.join(output_dir, "model.pt"))
    torch.save(checkpoint, tmp)
    os.replace(tmp, os.path.join(output_dir, "model.pt"))
    for name in TOKENIZER_FILES + ("config.json",):
        if os.path.exists(os.path.join(hf_dir, name)):
            shutil.copy(os.path.join(hf_dir, name), os.path.join(output_dir, name))
    with open(os.path.join(output_dir, "model-args.txt"), "w") as f:
        f.write(" ".join(flags) + "\n")
    summary = {"output": output_dir, "model_type": model_type, "parameters": sum(p.numel() for p in model.parameters()),
               "vocab": rows, "layers": config["num_hidden_layers"], "flags": " ".join(flags),
               "has_mlm_head": "cls.predictions.bias" in hf}
    logger.info("imported %s -> %s (%s parameters)", hf_dir, output_dir, f"{summary['parameters']:,}")
    return summary
