"""Transformer classifier checkpoints in and out of the compression tools.

``load_encoder(path)`` rebuilds any RoBERTa-style classifier checkpoint
(``hf_bert`` from ``distill-import-hf`` or fine-tuning, ``pruned_roberta``,
fairseq's ``roberta``) as a ``pruned_roberta`` model whose shapes are read
from the weights themselves, with its classification heads.
``save_encoder`` writes one back as a fairseq checkpoint that
``fairseq-train --finetune-from-model`` and ``load_model_ensemble_and_task``
read, with ``model-args.txt`` (the fairseq-train flags of its architecture)
beside it and the checkpoint, the marker, last.
"""

import argparse
import copy
import hashlib
import os
import re
from typing import List, Tuple

import torch

from ..fileio import atomic_output, check_input_file
from ..models.pruned_roberta import format_widths, layer_shapes

ENC = "encoder.sentence_encoder."
# the flags of model-args.txt, in this order (argparse names of the model's args)
ARCH_FLAGS = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
              "max_positions", "activation_fn", "dropout", "attention_dropout", "layer_norm_eps",
              "pooler_activation_fn", "layer_heads", "layer_ffn_dims", "embed_rank")


class _Vocabulary:
    """What building a RoBERTa needs of a dictionary: its size and padding index."""

    def __init__(self, size: int, pad: int = 1):
        self.size, self._pad = size, pad

    def __len__(self):
        return self.size

    def pad(self):
        return self._pad


class _Task:
    def __init__(self, dictionary):
        self.source_dictionary = self.target_dictionary = dictionary


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_args(cfg) -> argparse.Namespace:
    model = cfg["model"] if isinstance(cfg, dict) else cfg.model
    if isinstance(model, argparse.Namespace):
        return copy.deepcopy(model)
    return argparse.Namespace(**dict(model))


def shapes_from_state(state: dict, args) -> dict:
    """Layers, heads and FFN width per layer, embedding rank: read from the weights."""
    ids = sorted({int(m.group(1)) for k in state if (m := re.match(re.escape(ENC) + r"layers\.(\d+)\.", k))})
    if not ids or ids != list(range(len(ids))):
        raise ValueError(f"the weights' encoder layers are {ids}: not a transformer encoder checkpoint")
    head_dim = args.encoder_embed_dim // args.encoder_attention_heads
    q = f"{ENC}layers.{{}}.self_attn.q_proj.weight"
    heads = [state[q.format(i)].shape[0] // head_dim if q.format(i) in state else 0 for i in ids]  # 0: skipped
    ffn = [state[f"{ENC}layers.{i}.fc1.weight"].shape[0] for i in ids]
    rank = state[ENC + "embed_tokens.embed.weight"].shape[1] if ENC + "embed_tokens.embed.weight" in state else 0
    return {"encoder_layers": len(ids), "layer_heads": heads, "layer_ffn_dims": ffn, "embed_rank": rank}


def vocab_size(state: dict) -> int:
    for key in (ENC + "embed_tokens.weight", ENC + "embed_tokens.embed.weight"):
        if key in state:
            return state[key].shape[0]
    raise ValueError("the weights have no token embedding: not a transformer encoder checkpoint")


def as_pruned_args(args, shapes: dict) -> argparse.Namespace:
    from ..models.pruned_roberta import pruned_roberta_base

    args = copy.deepcopy(args)
    if getattr(args, "arch", None) not in ("hf_bert", "pruned_roberta") and getattr(args, "layer_norm_eps", None) is None:
        args.layer_norm_eps = 1e-5  # fairseq's RoBERTa (hf_bert's default is BERT's 1e-12)
    args.arch = args._name = "pruned_roberta"
    args.encoder_layers = shapes["encoder_layers"]
    args.layer_heads = format_widths(shapes["layer_heads"])
    args.layer_ffn_dims = format_widths(shapes["layer_ffn_dims"])
    args.embed_rank = shapes["embed_rank"]
    args.load_checkpoint_heads = True  # keep the checkpoint's classification heads
    pruned_roberta_base(args)
    return args


def load_encoder(path: str) -> Tuple[torch.nn.Module, dict, argparse.Namespace]:
    """(model in eval mode, the checkpoint's state, its args as ``pruned_roberta``)."""
    from fairseq import checkpoint_utils
    from fairseq.models.roberta import RobertaModel

    from ..models.pruned_roberta import PrunedRobertaModel

    check_input_file(path, "checkpoint")
    state = checkpoint_utils.load_checkpoint_to_cpu(path)
    args = model_args(state["cfg"])
    from fairseq.models import ARCH_MODEL_REGISTRY

    arch = getattr(args, "arch", None) or getattr(args, "_name", None)
    if not (arch in ARCH_MODEL_REGISTRY and issubclass(ARCH_MODEL_REGISTRY[arch], RobertaModel)):
        raise ValueError(f"{path} holds a {arch!r} model: the compression tools take RoBERTa-style "
                         f"transformers (hf_bert, pruned_roberta, roberta)")
    args = as_pruned_args(args, shapes_from_state(state["model"], args))
    model = PrunedRobertaModel.build_model(args, _Task(_Vocabulary(vocab_size(state["model"]))))
    model.load_state_dict(state["model"], strict=True, model_cfg=args)
    return model.eval(), state, args


def arch_flags(args) -> List[str]:
    flags = ["--arch", "pruned_roberta"]
    for name in ARCH_FLAGS:
        value = getattr(args, name, None)
        if value is None or value == "":
            continue
        flags += ["--" + name.replace("_", "-"), repr(value) if isinstance(value, float) else str(value)]
    if getattr(args, "untie_weights_roberta", False):
        flags.append("--untie-weights-roberta")
    return flags


def plain_config(cfg) -> dict:
    """A checkpoint's config as fairseq saves it: plain containers (an argparse model's Namespace kept),
    which torch's weights-only loading accepts."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        cfg = {k: cfg[k] for k in cfg}
    out = {}
    for k, v in dict(cfg).items():
        out[k] = OmegaConf.to_container(v, resolve=True, enum_to_str=True) if OmegaConf.is_config(v) else v
    return out


def save_encoder(model, state: dict, args, output_dir: str, extra_files: dict = None, extra_keys: dict = None) -> str:
    """``output_dir/model.pt`` (last) and ``model-args.txt``; ``extra_files``: name -> text, first;
    ``extra_keys``: more top-level entries of the checkpoint (fairseq ignores them)."""
    args = as_pruned_args(args, layer_shapes(model))
    del args.load_checkpoint_heads
    cfg = plain_config(state["cfg"])
    cfg["model"] = args
    checkpoint = {"cfg": cfg, "args": None, "model": model.state_dict(), "criterion": None, "extra_state": {},
                  "optimizer_history": [{"criterion_name": "none", "optimizer_name": "none",
                                         "lr_scheduler_state": {"best": None}, "num_updates": 0}],
                  "last_optimizer_state": None, **(extra_keys or {})}
    os.makedirs(output_dir, exist_ok=True)
    marker = os.path.join(output_dir, "model.pt")
    if os.path.exists(marker):  # a rerun: the old marker must not vouch for new files
        os.unlink(marker)
    for name, text in (extra_files or {}).items():
        with atomic_output(os.path.join(output_dir, name), "w") as f:
            f.write(text)
    with atomic_output(os.path.join(output_dir, "model-args.txt"), "w") as f:
        f.write(" ".join(arch_flags(args)) + "\n")
    with atomic_output(marker, "wb") as f:
        torch.save(checkpoint, f)
    return marker
