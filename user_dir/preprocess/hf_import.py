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
* LayerNorm epsilon: carried as ``--layer-norm-eps``;
* the masked-LM head (``cls.predictions`` of BERT, ``lm_head`` of RoBERTa),
  when the checkpoint has one, becomes ``encoder.lm_head`` with its rows in
  the same order; without one the head is fairseq's fresh one.

The output directory holds ``dict.txt``, the tokenizer files (for ``--bpe
wordpiece``), ``config.json``, ``model-args.txt`` (the fairseq-train flags
that rebuild this architecture for fine-tuning) and ``model.pt``.  Each
appears by rename, and ``model.pt``, the proof of a finished import, last.
"""

import contextlib
import json
import logging
import os
import shutil
import warnings
from typing import Dict, List, Optional

import torch

from ..fileio import atomic_output, check_input_file, remove_stale_temps
from .text_io import read_lines
from ..encoders.wordpiece import BERT_TO_FAIRSEQ

logger = logging.getLogger(__name__)

USER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAIRSEQ_SPECIAL_ORDER = ["[CLS]", "[PAD]", "[SEP]", "[UNK]"]  # -> <s> <pad> </s> <unk>
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_accurate", "gelu_pytorch_tanh": "gelu_accurate",
               "relu": "relu", "tanh": "tanh"}
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json")
MARKER = "model.pt"
OUTPUTS = ("dict.txt",) + TOKENIZER_FILES + ("config.json", "model-args.txt", MARKER)
CONFIG_KEYS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
               "max_position_embeddings")
HEAD_PREFIXES = ("cls.predictions.", "lm_head.")
# the temporary names of fileio.atomic_output / atomic_file: .NAME.PID.RANDOM.tmp[.EXT]


def read_json(path: str, what: str):
    check_input_file(path, what)
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{path} is not valid JSON ({e}): truncated or corrupted?") from None


def load_hf_state(hf_dir: str) -> Dict[str, torch.Tensor]:
    """The encoder's tensors without their ``bert.``/``roberta.`` prefix, and the MLM head's."""
    st, pt = os.path.join(hf_dir, "model.safetensors"), os.path.join(hf_dir, "pytorch_model.bin")
    try:
        if os.path.exists(st):
            path = st
            from safetensors.torch import load_file

            state = load_file(st)
        elif os.path.exists(pt):
            path = pt
            state = torch.load(pt, map_location="cpu", weights_only=True)
        else:
            raise FileNotFoundError(f"{hf_dir}: neither model.safetensors nor pytorch_model.bin")
    except FileNotFoundError:
        raise
    except Exception as e:  # safetensors' and torch's errors do not name the file
        raise ValueError(f"{path} cannot be read ({type(e).__name__}: {e}): truncated or corrupted?") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state dict of tensors")
    # *ForMaskedLM & co. keep the encoder under "bert." / "roberta." and their head beside it
    for prefix in ("bert.", "roberta."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()
                     if k.startswith((prefix,) + HEAD_PREFIXES)}
    return state


def has_mlm_head(hf: Dict[str, torch.Tensor]) -> bool:
    return "lm_head.dense.weight" in hf or "cls.predictions.transform.dense.weight" in hf


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
        index = read_json(path, "RoBERTa vocabulary")
    else:
        path = os.path.join(hf_dir, "tokenizer.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{hf_dir}: neither vocab.json nor tokenizer.json")
        tokenizer = read_json(path, "RoBERTa tokenizer")
        index = tokenizer.get("model", {}).get("vocab") if isinstance(tokenizer, dict) else None
    if not isinstance(index, dict) or not all(isinstance(i, int) for i in index.values()):
        raise ValueError(f"{path}: no vocabulary of token -> id")
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
    flags = [
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
    if not config.get("tie_word_embeddings", True):  # the MLM head has its own projection
        flags.append("--untie-weights-roberta")
    if config["model_type"] == "roberta" and act != "gelu":  # Hugging Face's RobertaLMHead always uses gelu
        flags += ["--lm-head-activation-fn", "gelu"]
    return flags


def mlm_head_state(hf: Dict[str, torch.Tensor], tied: bool) -> Optional[Dict[str, torch.Tensor]]:
    """The MLM head under fairseq's ``RobertaLMHead`` names, in BERT's row order; None without one.

    ``weight`` (the projection) only when untied: tied, it is the word embedding.
    """
    if "lm_head.dense.weight" in hf:  # RobertaForMaskedLM
        pre, names = "lm_head.", {"dense": "dense", "layer_norm": "layer_norm"}
    elif "cls.predictions.transform.dense.weight" in hf:  # BertForMaskedLM, BertForPreTraining
        pre, names = "cls.predictions.", {"transform.dense": "dense", "transform.LayerNorm": "layer_norm"}
    else:
        return None
    head = {f"{dst}.{p}": hf[f"{pre}{src}.{p}"] for src, dst in names.items() for p in ("weight", "bias")}
    # the logits' bias is decoder.bias; tied, transformers saves it as ``bias`` only
    biases = [pre + "bias", pre + "decoder.bias"] if tied else [pre + "decoder.bias", pre + "bias"]
    head["bias"] = hf[next((k for k in biases if k in hf), biases[0])]
    if not tied:
        head["weight"] = hf[pre + "decoder.weight"]
    return head


def convert_state(hf: Dict[str, torch.Tensor], order: List[int], layers: int,
                  target: Dict[str, torch.Tensor], position_offset: int = 2,
                  tied: bool = True) -> Dict[str, torch.Tensor]:
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
    head = mlm_head_state(hf, tied)
    for k, v in (head or {}).items():
        out["encoder.lm_head." + k] = v[order] if k in ("weight", "bias") else v
    if tied:  # one parameter: both names must carry the embedding, or loading one overwrites the other
        out["encoder.lm_head.weight"] = out[enc + "embed_tokens.weight"]
    for k, v in out.items():
        if v.shape != target[k].shape:
            raise ValueError(f"{k}: the Hugging Face weights give shape {tuple(v.shape)}, "
                             f"the fairseq model needs {tuple(target[k].shape)}")
    return out


def copy_atomic(src: str, dst: str) -> None:
    with open(src, "rb") as fin, atomic_output(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def import_hf(hf_dir: str, output_dir: str) -> dict:
    """Convert ``hf_dir`` into ``output_dir``; return a summary."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    if not os.path.isdir(hf_dir):
        if os.path.exists(hf_dir):
            raise ValueError(f"Hugging Face directory {hf_dir} is a file: name the directory of config.json")
        raise FileNotFoundError(f"Hugging Face directory not found: {hf_dir}")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output {output_dir} is a file: name a directory")
    if os.path.isdir(output_dir) and os.path.samefile(hf_dir, output_dir):
        raise ValueError(f"output {output_dir} is the Hugging Face directory: name another")
    config_path = os.path.join(hf_dir, "config.json")
    config = read_json(config_path, "Hugging Face config")
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} is not a JSON object")
    model_type = config.get("model_type")
    if model_type == "bert":
        vocab_path = os.path.join(hf_dir, "vocab.txt")
        check_input_file(vocab_path, "BERT vocabulary")
        vocab = read_lines(vocab_path)
        while vocab and vocab[-1] == "":
            vocab.pop()
    elif model_type == "roberta":
        vocab_path = os.path.join(hf_dir, "vocab.json")
        vocab = roberta_vocab(hf_dir)
    else:
        raise ValueError(f"{config_path}: model_type {model_type!r}; BERT and RoBERTa are converted")
    missing = [k for k in CONFIG_KEYS if not isinstance(config.get(k), int)]
    if missing:
        raise ValueError(f"{config_path} lacks the integers {missing}")
    flags = model_flags(config)
    hf = load_hf_state(hf_dir)
    weights = "embeddings.word_embeddings.weight"
    if weights not in hf:
        raise ValueError(f"{hf_dir}: the weights have no {weights}: not a BERT or RoBERTa checkpoint")
    rows = hf[weights].shape[0]
    if rows != len(vocab):
        raise ValueError(f"{vocab_path} has {len(vocab)} tokens but the embedding has {rows} rows")
    order = fairseq_vocab_order(vocab, vocab_path) if model_type == "bert" else list(range(rows))
    names = [BERT_TO_FAIRSEQ.get(vocab[i], vocab[i]) if model_type == "bert" else vocab[i] for i in order]
    if "<mask>" not in names:  # the masked_lm task (which reloads the checkpoint) adds it otherwise
        raise ValueError(f"{vocab_path} has no mask token ({'[MASK]' if model_type == 'bert' else '<mask>'})")

    # a rerun's stale marker would vouch for files being rewritten; files of another import go too
    os.makedirs(output_dir, exist_ok=True)
    remove_stale_temps(output_dir, OUTPUTS)  # of a killed import
    for name in (MARKER,) + TOKENIZER_FILES:
        if name == MARKER or not os.path.exists(os.path.join(hf_dir, name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(output_dir, name))
    with atomic_output(os.path.join(output_dir, "dict.txt"), "w", encoding="utf-8", newline="\n") as f:
        for name in names[4:]:
            f.write(f"{name} 1\n")
    with warnings.catch_warnings():  # hydra's deprecation notices from fairseq's config code
        warnings.simplefilter("ignore")
        args = options.parse_args_and_arch(options.get_training_parser(), [
            # absolute: the masked_lm task of a reload finds dict.txt there from any directory
            os.path.abspath(output_dir), "--task", "masked_lm", "--user-dir", USER_DIR,
            "--criterion", "masked_lm", *flags,
        ])
        cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(args)
    if len(task.source_dictionary) != rows:
        raise ValueError(f"the fairseq dictionary has {len(task.source_dictionary)} entries for {rows} "
                         f"BERT tokens: a token of {vocab_path} is not usable in dict.txt")
    with torch.random.fork_rng():  # the fresh rows (unused positions, a missing head) equal on a rerun
        torch.manual_seed(0)
        model = task.build_model(args)
    tied = bool(config.get("tie_word_embeddings", True))
    try:
        state = convert_state(hf, order, config["num_hidden_layers"], model.state_dict(),
                              position_offset=2 if model_type == "bert" else 0, tied=tied)
    except KeyError as e:
        raise ValueError(f"{hf_dir}: the weights lack {e.args[0]} (config.json: {model_type}, "
                         f"{config['num_hidden_layers']} layers)") from None
    model.load_state_dict(state, strict=True)
    checkpoint = {"cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "args": None,
                  "model": model.state_dict(), "extra_state": {},
                  # fine-tuning restores this with --reset-optimizer, as fairseq's RoBERTa recipe
                  "optimizer_history": [{"criterion_name": "MaskedLmLoss", "optimizer_name": "none",
                                         "lr_scheduler_state": {"best": None}, "num_updates": 0}],
                  "last_optimizer_state": None}
    for name in TOKENIZER_FILES + ("config.json",):
        if os.path.exists(os.path.join(hf_dir, name)):
            copy_atomic(os.path.join(hf_dir, name), os.path.join(output_dir, name))
    with atomic_output(os.path.join(output_dir, "model-args.txt"), "w") as f:
        f.write(" ".join(flags) + "\n")
    # last: the proof of completion; saved to a file object, as to a path torch.save would name its
    # zip records after the temporary file and reruns would differ in bytes
    with atomic_output(os.path.join(output_dir, MARKER), "wb") as f:
        torch.save(checkpoint, f)
    summary = {"output": output_dir, "model_type": model_type, "parameters": sum(p.numel() for p in model.parameters()),
               "vocab": rows, "layers": config["num_hidden_layers"], "flags": " ".join(flags),
               "has_mlm_head": has_mlm_head(hf)}
    logger.info("imported %s -> %s (%s parameters)", hf_dir, output_dir, f"{summary['parameters']:,}")
    return summary
