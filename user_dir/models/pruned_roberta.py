"""``pruned_roberta``: an ``hf_bert`` encoder whose config records every pruned shape.

Per layer it keeps its own number of attention heads (``--layer-heads``, each
of the original ``encoder_embed_dim / encoder_attention_heads`` width) and
FFN width (``--layer-ffn-dims``); ``--encoder-layers`` is the depth, and
``--embed-rank R`` factorises the word embedding as vocab x R, then R -> d
without bias.  The checkpoint alone rebuilds the model: ``build_model`` makes
the full-size encoder and cuts it to these shapes with fairseq's own pruning
hooks (``MultiheadAttention._adaptive_prune_heads``,
``TransformerEncoderLayer._prune_fc_layer``); the weights come from the state
dict.  ``distill-prune`` writes such checkpoints (``user_dir/compress``).

A factorised embedding cannot tie the masked-LM head to a vocab x d matrix,
so such a model has no LM head (it is a classifier).
"""

import warnings
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
from fairseq.models import register_model, register_model_architecture

from .hf_bert import HFBertModel, hf_bert_base


def parse_widths(value, layers: int, default: int, flag: str) -> List[int]:
    """``"4,4,3"`` (one per layer) or a single number for every layer; empty: ``default``."""
    if value is None or value == "" or value == []:
        return [default] * layers
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        items = [int(v) for v in value.replace(" ", "").split(",") if v]
    else:
        items = [int(v) for v in value]
    if len(items) == 1:
        items = items * layers
    if len(items) != layers:
        raise ValueError(f"{flag} gives {len(items)} values for {layers} layers")
    bad = [w for w in items if not 0 <= w <= default]
    if bad:
        raise ValueError(f"{flag}: every value must be in 0..{default} (0: the sublayer is skipped), got {bad}")
    return items


def format_widths(widths: Sequence[int]) -> str:
    return ",".join(str(w) for w in widths)


class FactorizedEmbedding(nn.Module):
    """vocab x rank, then rank -> dim without bias: W = embed.weight @ proj.weight.T."""

    def __init__(self, num_embeddings: int, rank: int, embedding_dim: int, padding_idx: int):
        super().__init__()
        self.embed = nn.Embedding(num_embeddings, rank, padding_idx=padding_idx)
        self.proj = nn.Linear(rank, embedding_dim, bias=False)
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx

    @property
    def rank(self) -> int:
        return self.embed.embedding_dim

    def full_weight(self) -> torch.Tensor:
        return self.embed.weight @ self.proj.weight.t()

    def forward(self, tokens):
        return self.proj(self.embed(tokens))


def keep_heads(attn, heads: Sequence[int]) -> None:
    """Keep these heads of a fairseq MultiheadAttention, in this order."""
    hd = attn.head_dim
    if not heads:
        raise ValueError("a layer must keep at least one attention head")
    attn._adaptive_prune_heads([(h * hd, (h + 1) * hd) for h in heads])
    attn.out_proj.in_features = len(heads) * hd
    # torch's fused attention checks q/k/v against the full width: use fairseq's own path
    attn._set_skip_embed_dim_check()


class SkippedAttention(nn.Module):
    """The attention sublayer of a layer that keeps no head (MiniDisc at high sparsity): its output is
    zero, so the block is its residual and LayerNorm."""

    def __init__(self, head_dim: int, embed_dim: int):
        super().__init__()
        self.num_heads, self.head_dim, self.embed_dim = 0, head_dim, embed_dim
        self.skip_embed_dim_check = True

    def forward(self, query, key=None, value=None, **kwargs):
        return query.new_zeros(query.shape), None

    def _set_skip_embed_dim_check(self):
        pass


def skip_attention(layer) -> None:
    """No attention sublayer in this TransformerEncoderLayer (0 heads)."""
    attn = layer.self_attn
    layer.self_attn = SkippedAttention(attn.head_dim, attn.embed_dim)


def skip_ffn(layer) -> None:
    """No FFN sublayer (0 neurons): fc1 is d -> 0 and fc2 0 -> d without bias, so its output is zero."""
    d = layer.fc1.in_features
    dev = layer.fc1.weight.device
    with warnings.catch_warnings():  # "initializing zero-element tensors is a no-op": nothing to initialise
        warnings.simplefilter("ignore", UserWarning)
        layer.fc1 = nn.Linear(d, 0).to(dev)
        layer.fc2 = nn.Linear(0, d, bias=False).to(dev)


def keep_ffn(layer, neurons: Sequence[int]) -> None:
    """Keep these FFN neurons (fc1 rows, fc2 columns) of a TransformerEncoderLayer."""
    if not neurons:
        raise ValueError("a layer must keep at least one FFN neuron")
    keep = set(int(n) for n in neurons)
    if list(neurons) != sorted(keep):
        raise ValueError("FFN neurons to keep must be increasing and distinct")
    layer._prune_fc_layer({i for i in range(layer.fc1.out_features) if i not in keep})


def factorize_embedding(encoder, rank: int, weights: Optional[tuple] = None) -> FactorizedEmbedding:
    """Replace ``encoder.sentence_encoder.embed_tokens`` by a vocab x rank x dim factorisation.

    ``weights``: (embed [V, r], proj [d, r]) to put in; otherwise fresh.  The LM head goes.
    """
    old = encoder.sentence_encoder.embed_tokens
    new = FactorizedEmbedding(old.num_embeddings, rank, old.embedding_dim, old.padding_idx)
    new.to(old.weight.device if hasattr(old, "weight") else old.embed.weight.device)
    if weights is not None:
        with torch.no_grad():
            new.embed.weight.copy_(weights[0])
            new.proj.weight.copy_(weights[1])
    encoder.sentence_encoder.embed_tokens = new
    encoder.lm_head = None
    return new


def layer_shapes(model) -> dict:
    """The shapes ``pruned_roberta`` records, read from a built encoder."""
    enc = model.encoder.sentence_encoder
    emb = enc.embed_tokens
    return {
        "encoder_layers": len(enc.layers),
        "layer_heads": [layer.self_attn.num_heads for layer in enc.layers],
        "layer_ffn_dims": [layer.fc1.out_features for layer in enc.layers],
        "embed_rank": emb.rank if isinstance(emb, FactorizedEmbedding) else 0,
    }


def record_shapes(model) -> dict:
    """Write the model's current shapes into its args (what a checkpoint saved next records)."""
    shapes = layer_shapes(model)
    args = getattr(model, "args", None)
    if args is not None:
        args.encoder_layers = shapes["encoder_layers"]
        args.layer_heads = format_widths(shapes["layer_heads"])
        args.layer_ffn_dims = format_widths(shapes["layer_ffn_dims"])
        args.embed_rank = shapes["embed_rank"]
    return shapes


def state_shapes(state_dict: dict, head_dim: int) -> dict:
    """The shapes a pruned_roberta state dict holds (``layer_shapes`` of the model that saved it)."""
    prefix = "encoder.sentence_encoder."
    layers = sorted({int(k[len(prefix) + 7:].split(".")[0]) for k in state_dict if k.startswith(prefix + "layers.")})
    emb = state_dict.get(prefix + "embed_tokens.embed.weight")
    return {
        "encoder_layers": len(layers),
        "layer_heads": [state_dict[f"{prefix}layers.{i}.self_attn.q_proj.weight"].shape[0] // head_dim
                        if f"{prefix}layers.{i}.self_attn.q_proj.weight" in state_dict else 0 for i in layers],
        "layer_ffn_dims": [state_dict[f"{prefix}layers.{i}.fc1.weight"].shape[0] for i in layers],
        "embed_rank": emb.shape[1] if emb is not None else 0,
    }


def shrink_to_state(model, state_dict: dict) -> None:
    """Cut ``model`` to the (smaller) shapes of ``state_dict`` before loading it: a checkpoint saved
    after an iterative pruning step, by a run whose flags give the shapes it started from."""
    enc = model.encoder.sentence_encoder
    mine = layer_shapes(model)
    theirs = state_shapes(state_dict, enc.layers[0].self_attn.head_dim)
    if theirs == mine or not theirs["encoder_layers"] or (theirs["embed_rank"] == 0) != (mine["embed_rank"] == 0):
        return  # nothing to cut, or not a pruned version of this model: load_state_dict names the mismatch
    if theirs["encoder_layers"] > mine["encoder_layers"] or theirs["embed_rank"] > mine["embed_rank"] or any(
            a > b for key in ("layer_heads", "layer_ffn_dims") for a, b in zip(theirs[key], mine[key])):
        return  # not a pruned version of this model: load_state_dict names the mismatch
    from ..compress.iterative import drop_top_layers, keep_ffn_inplace, keep_heads_inplace, keep_rank_inplace

    drop_top_layers(model, theirs["encoder_layers"])
    for layer, h, f in zip(enc.layers, theirs["layer_heads"], theirs["layer_ffn_dims"]):
        if h == 0 and not isinstance(layer.self_attn, SkippedAttention):
            skip_attention(layer)
        elif 0 < h < layer.self_attn.num_heads:  # which ones does not matter: the weights are overwritten
            keep_heads_inplace(layer.self_attn, range(h))
        if f == 0 and layer.fc1.out_features:
            skip_ffn(layer)
        elif 0 < f < layer.fc1.out_features:
            keep_ffn_inplace(layer, range(f))
    if theirs["embed_rank"] < mine["embed_rank"]:
        keep_rank_inplace(enc.embed_tokens, theirs["embed_rank"])
    record_shapes(model)


PRUNER_STATE = "iterative_pruning._extra_state"


@register_model("pruned_roberta")
class PrunedRobertaModel(HFBertModel):
    @staticmethod
    def add_args(parser):
        HFBertModel.add_args(parser)
        parser.add_argument("--layer-heads", type=str, metavar="H1,H2,...",
                            help="attention heads kept in each layer (one number: every layer); "
                                 "each head is encoder_embed_dim / encoder_attention_heads wide")
        parser.add_argument("--layer-ffn-dims", type=str, metavar="F1,F2,...",
                            help="FFN width of each layer (one number: every layer)")
        parser.add_argument("--embed-rank", type=int, metavar="R",
                            help="factorise the word embedding as vocab x R, R -> d (0: not factorised)")

    @classmethod
    def build_model(cls, args, task):
        pruned_roberta_base(args)
        model = super().build_model(args, task)
        layers = args.encoder_layers
        heads = parse_widths(args.layer_heads, layers, args.encoder_attention_heads, "--layer-heads")
        ffn = parse_widths(args.layer_ffn_dims, layers, args.encoder_ffn_embed_dim, "--layer-ffn-dims")
        for layer, h, f in zip(model.encoder.sentence_encoder.layers, heads, ffn):
            if h == 0:
                skip_attention(layer)
            elif h < args.encoder_attention_heads:
                keep_heads(layer.self_attn, range(h))
            if f == 0:
                skip_ffn(layer)
            elif f < args.encoder_ffn_embed_dim:
                keep_ffn(layer, range(f))
        if args.embed_rank:
            if not 1 <= args.embed_rank <= args.encoder_embed_dim:
                raise ValueError(f"--embed-rank must be in 1..{args.encoder_embed_dim}, got {args.embed_rank}")
            factorize_embedding(model.encoder, args.embed_rank)
        return model

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        shrink_to_state(self, state_dict)
        pruner = getattr(self, "iterative_pruning", None)
        if pruner is None:
            state_dict.pop(PRUNER_STATE, None)  # a checkpoint from the middle of iterative pruning
        elif PRUNER_STATE not in state_dict:
            state_dict[PRUNER_STATE] = pruner.get_extra_state()  # the pruning starts here
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)


@register_model_architecture("pruned_roberta", "pruned_roberta")
def pruned_roberta_base(args):
    args.layer_heads = getattr(args, "layer_heads", None)
    args.layer_ffn_dims = getattr(args, "layer_ffn_dims", None)
    args.embed_rank = getattr(args, "embed_rank", 0) or 0
    hf_bert_base(args)
