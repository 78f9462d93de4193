"""One-step structured pruning of a transformer classifier (ROSITA, Liu et al. 2021).

``prune(model, ...)`` cuts, in place:

* depth: ``layers`` (the indices kept, in order; ROSITA keeps the bottom
  ones), so ``--layers 0,2,4`` also makes a student initialised from a
  subset of the teacher's layers;
* heads: the ``keep_heads`` of highest importance in each layer;
* FFN: the ``ffn_dim`` neurons of highest importance in each layer (fc1 rows
  and fc2 columns);
* embedding: rank ``embed_rank`` by truncated SVD of the word embedding
  (W = U S V^T -> vocab x r ``U S`` then r -> d ``V^T``).  A factorised
  embedding is cut to its first ``r`` columns, the SVD's order, without a
  new SVD.

Scores come from ``distill-importance`` (``importance.py``); pruning nothing
(every layer, head and neuron kept, no rank) leaves the outputs unchanged.
"""

import logging
from typing import List, Optional, Sequence

import torch

from ..models.pruned_roberta import FactorizedEmbedding, factorize_embedding, keep_ffn, keep_heads, layer_shapes

logger = logging.getLogger(__name__)


def top_indices(scores: Sequence[float], k: int) -> List[int]:
    """The k highest-scoring indices, in increasing index order (ties: the lower index)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:k])


def truncated_svd(weight: torch.Tensor, rank: int):
    """(vocab x r, d x r) factors of the best rank-r approximation of ``weight``."""
    U, S, Vh = torch.linalg.svd(weight.double(), full_matrices=False)
    return (U[:, :rank] * S[:rank]).to(weight.dtype), Vh[:rank].t().contiguous().to(weight.dtype)


@torch.no_grad()
def prune(model, layers: Optional[Sequence[int]] = None, keep_heads_per_layer: Optional[int] = None,
          ffn_dim: Optional[int] = None, embed_rank: Optional[int] = None,
          importance: Optional[dict] = None) -> dict:
    """Prune ``model`` (a ``pruned_roberta``) in place; return what was kept."""
    enc = model.encoder.sentence_encoder
    before = layer_shapes(model)
    n = before["encoder_layers"]
    layers = list(range(n)) if layers is None else [int(i) for i in layers]
    if not layers or any(not 0 <= i < n for i in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"layers to keep {layers}: distinct indices in 0..{n - 1}")
    needs_scores = [flag for flag, value, full in (("--keep-heads", keep_heads_per_layer, before["layer_heads"]),
                                                   ("--ffn-dim", ffn_dim, before["layer_ffn_dims"]))
                    if value is not None and any(value < f for f in (full[i] for i in layers))]
    if needs_scores and importance is None:
        raise ValueError(f"{' and '.join(needs_scores)} choose what to keep by importance: "
                         f"pass --importance (from distill-importance)")
    kept = {"layers": layers, "heads": [], "ffn": []}
    for i in layers:
        layer = enc.layers[i]
        h, f = layer.self_attn.num_heads, layer.fc1.out_features
        if keep_heads_per_layer is not None and keep_heads_per_layer < h:
            if keep_heads_per_layer < 1:
                raise ValueError("--keep-heads must be at least 1")
            heads = top_indices(importance["heads"][i], keep_heads_per_layer)
            keep_heads(layer.self_attn, heads)
        else:
            heads = list(range(h))
        if ffn_dim is not None and ffn_dim < f:
            if ffn_dim < 1:
                raise ValueError("--ffn-dim must be at least 1")
            neurons = top_indices(importance["ffn"][i], ffn_dim)
            keep_ffn(layer, neurons)
        else:
            neurons = list(range(f))
        kept["heads"].append(heads)
        kept["ffn"].append(len(neurons))
    enc.layers = torch.nn.ModuleList([enc.layers[i] for i in layers])
    enc.num_layers = len(layers)
    emb = enc.embed_tokens
    if embed_rank:
        if isinstance(emb, FactorizedEmbedding):
            if embed_rank > emb.rank:
                raise ValueError(f"--embed-rank {embed_rank} exceeds the embedding's rank {emb.rank}")
            factors = (emb.embed.weight[:, :embed_rank].clone(), emb.proj.weight[:, :embed_rank].clone())
        else:
            if not 1 <= embed_rank <= emb.embedding_dim:
                raise ValueError(f"--embed-rank must be in 1..{emb.embedding_dim}, got {embed_rank}")
            factors = truncated_svd(emb.weight, embed_rank)
        factorize_embedding(model.encoder, embed_rank, factors)
    kept["shapes"] = layer_shapes(model)
    return kept


def check_importance(importance: dict, model, path: str) -> None:
    """The scores must be the model's: one per head and FFN neuron of each layer."""
    shapes = layer_shapes(model)
    heads, ffn = importance.get("heads"), importance.get("ffn")
    want_h, want_f = shapes["layer_heads"], shapes["layer_ffn_dims"]
    if not isinstance(heads, list) or [len(x) for x in heads] != want_h:
        raise ValueError(f"{path}: head scores per layer {[len(x) for x in heads or []]}, the checkpoint has "
                         f"{want_h} heads: scores of another model")
    if not isinstance(ffn, list) or [len(x) for x in ffn] != want_f:
        raise ValueError(f"{path}: FFN scores per layer {[len(x) for x in ffn or []]}, the checkpoint has "
                         f"widths {want_f}: scores of another model")


def parse_layers(value: Optional[str], num_layers: Optional[int], total: int) -> List[int]:
    if value and num_layers:
        raise ValueError("give --layers or --num-layers, not both")
    if value:
        return [int(x) for x in value.replace(" ", "").split(",") if x != ""]
    if num_layers:
        if not 1 <= num_layers <= total:
            raise ValueError(f"--num-layers must be in 1..{total}, got {num_layers}")
        return list(range(num_layers))  # the bottom layers, as ROSITA
    return list(range(total))


def prune_checkpoint(checkpoint: str, output_dir: str, importance_path: str = "", layers: str = "",
                     num_layers: int = 0, keep_heads: Optional[int] = None, ffn_dim: Optional[int] = None,
                     embed_rank: int = 0) -> dict:
    """``checkpoint`` -> ``output_dir/model.pt`` (``pruned_roberta``), ``model-args.txt``, ``pruning.json``."""
    import json

    from .encoder_checkpoint import file_digest, load_encoder, save_encoder
    from .importance import load_importance

    model, state, args = load_encoder(checkpoint)
    scores = None
    if importance_path:
        scores = load_importance(importance_path)
        digest = file_digest(checkpoint)
        if scores.get("checkpoint_sha256") != digest:
            raise ValueError(f"{importance_path} scores {scores.get('checkpoint')}, not {checkpoint} (their "
                             f"contents differ): run distill-importance on the checkpoint you prune")
        check_importance(scores, model, importance_path)
    before = sum(p.numel() for p in model.parameters())
    kept = prune(model, parse_layers(layers, num_layers, len(model.encoder.sentence_encoder.layers)),
                 keep_heads, ffn_dim, embed_rank or None, scores)
    summary = {"source": checkpoint, "importance": importance_path or None, **kept,
               "parameters_before": before, "parameters": sum(p.numel() for p in model.parameters())}
    save_encoder(model, state, args, output_dir,
                 extra_files={"pruning.json": json.dumps(summary, indent=1) + "\n"})
    logger.info("pruned %s -> %s/model.pt: %s -> %s parameters", checkpoint, output_dir,
                f"{before:,}", f"{summary['parameters']:,}")
    return summary
