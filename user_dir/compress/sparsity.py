"""MiniDisc's sparsification (Zhang et al., 2022): mask-gradient importance, heads and FFN
neurons reordered by it, a global ranking into a sparsity map, and the model run at a grid
sparsity as a weight-shared view or sliced dense.

Importance.  A head mask m_h [layers, heads] multiplies each head's context vector before the
attention output projection, a neuron mask m_f [layers, FFN] each FFN activation before ``fc2``;
both are 1, so the model computes what it computes.  The score of a head (neuron) is
``sum over batches |d loss_b / d m|`` (MiniDisc: gold cross-entropy on dev, eval mode), then each
layer's scores are divided by their L2 norm, heads and neurons separately.

Sparsity s (a number, percent) removes ``round(s / 100 * layers * heads)`` heads and as many FFN
neurons in proportion, ranked globally across layers by normalised score (the least important
go first); each layer's removed neurons are rounded to a multiple of 8 (half up; MiniDisc's
``round_to_multiple_of_eight``), so the total is the target to within 4 neurons per layer.  After
reordering, a layer keeping k heads keeps its first k: every sparsity is a prefix of the same
weights.  A layer that keeps no head (no neuron) skips that sublayer: its output is zero, so
the block is the residual followed by its LayerNorm, as in MiniDisc.
"""

import contextlib
import logging
from typing import Callable, Dict, Iterable, List, Sequence

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)
FORMAT = "minidisc-sparsity/1"
DEFAULT_GRID = (0, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95)


def encoder_layers(model):
    return model.encoder.sentence_encoder.layers


def _use_module_path(layers) -> None:
    # torch's fused attention reads out_proj's weights directly: hooks on it would not run
    for layer in layers:
        layer.self_attn._set_skip_embed_dim_check()


@contextlib.contextmanager
def masked(model, head_masks: Sequence[torch.Tensor], ffn_masks: Sequence[torch.Tensor],
           zero_attention: Sequence[bool] = (), zero_ffn: Sequence[bool] = ()):
    """Run ``model`` with each layer's heads (FFN neurons) multiplied by its mask; a layer flagged in
    ``zero_attention`` (``zero_ffn``) has that sublayer's output set to zero (bias included)."""
    layers = encoder_layers(model)
    _use_module_path(layers)
    handles = []

    def scale_heads(mask, hd):
        return lambda mod, args: (args[0] * mask.repeat_interleave(hd).to(args[0].dtype),) + args[1:]

    def scale_ffn(mask):
        return lambda mod, args: (args[0] * mask.to(args[0].dtype),) + args[1:]

    def zero(mod, args, out):
        return out * 0

    from ..models.pruned_roberta import SkippedAttention

    try:
        for i, layer in enumerate(layers):
            attn = layer.self_attn
            if isinstance(attn, SkippedAttention):  # no heads left: its output is zero already
                pass
            elif head_masks[i] is not None:
                handles.append(attn.out_proj.register_forward_pre_hook(scale_heads(head_masks[i], attn.head_dim)))
            if ffn_masks[i] is not None:
                handles.append(layer.fc2.register_forward_pre_hook(scale_ffn(ffn_masks[i])))
            if i < len(zero_attention) and zero_attention[i] and not isinstance(attn, SkippedAttention):
                handles.append(attn.out_proj.register_forward_hook(zero))
            if i < len(zero_ffn) and zero_ffn[i]:
                handles.append(layer.fc2.register_forward_hook(zero))
        yield
    finally:
        for h in handles:
            h.remove()


def normalise_per_layer(scores: torch.Tensor) -> torch.Tensor:
    """Each row divided by its L2 norm (a row of zeros stays zero)."""
    norm = scores.norm(dim=-1, keepdim=True)
    return scores / torch.where(norm > 0, norm, torch.ones_like(norm))


def mask_importance(model, batches: Iterable, loss_fn: Callable, progress=None) -> dict:
    """``{"heads": [[...] per layer], "ffn": [[...] per layer], "raw_heads", "raw_ffn", "batches",
    "sentences"}``: summed |d loss / d mask| per batch, normalised per layer (``raw_*``: before).

    ``loss_fn(model, sample)`` returns the batch's mean loss; the weights get no gradient.
    """
    from .importance import score_batches

    device = next(model.parameters()).device
    layers = encoder_layers(model)
    hm = [torch.ones(l.self_attn.num_heads, device=device) for l in layers]
    fm = [torch.ones(l.fc1.out_features, device=device) for l in layers]
    acc_h = [torch.zeros(len(m)) for m in hm]
    acc_f = [torch.zeros(len(m)) for m in fm]

    def collect():  # |gradient| of each batch, summed
        for a, m in zip(acc_h + acc_f, hm + fm):
            if m.grad is not None:  # none for a skipped sublayer (no heads or neurons to score)
                a += m.grad.detach().abs().cpu()

    with masked(model, hm, fm):
        n_batches, n_sentences = score_batches(model, batches, loss_fn, hm + fm, collect, progress)
    # layers can differ in width (a pruned model): normalise each on its own
    heads = [normalise_per_layer(a[None])[0] for a in acc_h]
    ffn = [normalise_per_layer(a[None])[0] for a in acc_f]
    return {"heads": [h.tolist() for h in heads], "ffn": [f.tolist() for f in ffn],
            "raw_heads": [a.tolist() for a in acc_h], "raw_ffn": [a.tolist() for a in acc_f],
            "batches": n_batches, "sentences": n_sentences}


@torch.no_grad()
def reorder(model, head_order: Sequence[Sequence[int]], ffn_order: Sequence[Sequence[int]]) -> None:
    """Permute each layer's heads and FFN neurons into these orders (position i gets old index
    order[i]): the model computes the same function."""
    for layer, ho, fo in zip(encoder_layers(model), head_order, ffn_order):
        attn = layer.self_attn
        hd = attn.head_dim
        idx = torch.tensor([h * hd + j for h in ho for j in range(hd)], dtype=torch.long)
        if sorted(ho) != list(range(attn.num_heads)) or sorted(fo) != list(range(layer.fc1.out_features)):
            raise ValueError("an order must be a permutation of the layer's heads (neurons)")
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight.copy_(proj.weight[idx])
            proj.bias.copy_(proj.bias[idx])
        attn.out_proj.weight.copy_(attn.out_proj.weight[:, idx])
        f = torch.as_tensor(list(fo), dtype=torch.long)
        layer.fc1.weight.copy_(layer.fc1.weight[f])
        layer.fc1.bias.copy_(layer.fc1.bias[f])
        layer.fc2.weight.copy_(layer.fc2.weight[:, f])


def descending_orders(scores: Sequence[Sequence[float]]) -> List[List[int]]:
    """Each layer's indices by score, highest first (ties: lower index first)."""
    return [sorted(range(len(row)), key=lambda i: (-row[i], i)) for row in scores]


def _removed_per_layer(scores: Sequence[Sequence[float]], n_remove: int) -> List[int]:
    """How many of each layer's structures the ``n_remove`` lowest scores across layers hit."""
    ranked = sorted(((s, layer, i) for layer, row in enumerate(scores) for i, s in enumerate(row)))
    out = [0] * len(scores)
    for _, layer, _ in ranked[:n_remove]:
        out[layer] += 1
    return out


def round_to_multiple(n: int, multiple: int) -> int:
    return int((n + multiple / 2) // multiple * multiple) if multiple > 1 else n


def sparsity_map(head_scores, ffn_scores, grid: Sequence[float] = DEFAULT_GRID, multiple: int = 8) -> dict:
    """``{"format", "grid", "levels": [{"sparsity": s, "heads": [kept per layer], "ffn": [...]}]}``.

    Sparsities are numbers (percent, 0 <= s < 100), sorted; the heads' counts are exact, each
    layer's removed FFN neurons rounded to a multiple of ``multiple``.
    """
    grid = sorted({float(s) for s in grid})
    if not grid or grid[0] < 0 or grid[-1] >= 100:
        raise ValueError(f"sparsities must be in [0, 100): got {grid}")
    widths_h = [len(r) for r in head_scores]
    widths_f = [len(r) for r in ffn_scores]
    levels = []
    for s in grid:
        rm_h = _removed_per_layer(head_scores, int(round(s / 100 * sum(widths_h))))
        rm_f = _removed_per_layer(ffn_scores, int(round(s / 100 * sum(widths_f))))
        rm_f = [min(round_to_multiple(r, multiple), w) for r, w in zip(rm_f, widths_f)]
        levels.append({"sparsity": int(s) if s == int(s) else s,
                       "heads": [w - r for w, r in zip(widths_h, rm_h)],
                       "ffn": [w - r for w, r in zip(widths_f, rm_f)]})
    return {"format": FORMAT, "grid": [lv["sparsity"] for lv in levels], "multiple": multiple, "levels": levels}


def level(smap: dict, sparsity: float) -> dict:
    """The map's entry for ``sparsity`` (compared as a number)."""
    for lv in smap["levels"]:
        if float(lv["sparsity"]) == float(sparsity):
            return lv
    raise ValueError(f"sparsity {sparsity} is not on the map's grid {smap['grid']}")


def _check_level(layers, kept: dict) -> None:
    heads, ffn = kept["heads"], kept["ffn"]
    if len(heads) != len(layers) or len(ffn) != len(layers):
        raise ValueError(f"the sparsity level has {len(heads)} layers, the model {len(layers)}")
    for layer, k, m in zip(layers, heads, ffn):
        H, F = layer.self_attn.num_heads, layer.fc1.out_features
        if not (0 <= k <= H and 0 <= m <= F):
            raise ValueError(f"a level keeps {k} heads and {m} neurons of a layer with {H} and {F}")


def masked_view(model, kept: dict):
    """``view`` computed by masks over the full width (the reference the sliced view is tested against)."""
    layers = encoder_layers(model)
    _check_level(layers, kept)
    device = next(model.parameters()).device
    hm, fm = [], []
    for layer, k, m in zip(layers, kept["heads"], kept["ffn"]):
        H, F = layer.self_attn.num_heads, layer.fc1.out_features
        hm.append(None if k == H else (torch.arange(H, device=device) < k).float())
        fm.append(None if m == F else (torch.arange(F, device=device) < m).float())
    return masked(model, hm, fm, zero_attention=[k == 0 for k in kept["heads"]],
                  zero_ffn=[m == 0 for m in kept["ffn"]])


def _rows(linear, n):  # the first n outputs of a Linear: slices of its weights, no copy
    return lambda x: F.linear(x, linear.weight[:n], None if linear.bias is None else linear.bias[:n])


def _columns(linear, n):  # the first n inputs of a Linear
    return lambda x: F.linear(x, linear.weight[:, :n], linear.bias)


def _zeros(query, *args, **kwargs):  # an attention sublayer keeping no head
    return query.new_zeros(query.shape), None


def view(model, kept: dict):
    """A context in which ``model`` (reordered) runs with only each layer's first ``kept["heads"][i]``
    heads and ``kept["ffn"][i]`` neurons: the weights sliced (views of the same parameters, which
    get the gradients), so a sparser level also costs less to run.  Attention runs fairseq's own
    path with ``num_heads`` and ``embed_dim`` set to the kept width, as after head pruning."""
    layers = encoder_layers(model)
    _check_level(layers, kept)  # now, not on entering
    return _sliced(layers, kept)


@contextlib.contextmanager
def _sliced(layers, kept: dict):
    from ..models.pruned_roberta import SkippedAttention

    _use_module_path(layers)
    patched, saved = [], []  # modules given an instance forward; (attention, num_heads, embed_dim)
    try:
        for layer, k, m in zip(layers, kept["heads"], kept["ffn"]):
            attn = layer.self_attn
            if not isinstance(attn, SkippedAttention) and k < attn.num_heads:
                if k == 0:  # the sublayer's output is zero, bias included
                    attn.forward = _zeros
                    patched.append(attn)
                else:
                    n = k * attn.head_dim
                    saved.append((attn, attn.num_heads, attn.embed_dim))
                    attn.num_heads, attn.embed_dim = k, n
                    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
                        proj.forward = _rows(proj, n)
                    attn.out_proj.forward = _columns(attn.out_proj, n)
                    patched += [attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj]
            if m < layer.fc1.out_features:
                layer.fc1.forward = _rows(layer.fc1, m)
                layer.fc2.forward = (_columns(layer.fc2, m) if m else
                                     lambda x, d=layer.fc2.out_features: x.new_zeros(x.shape[:-1] + (d,)))
                patched += [layer.fc1, layer.fc2]
        yield
    finally:
        for mod in patched:
            del mod.forward
        for attn, h, d in saved:
            attn.num_heads, attn.embed_dim = h, d


def densify(model, kept: dict) -> None:
    """Slice ``model`` (reordered) in place to ``kept``'s shapes; a layer keeping no heads (neurons)
    gets no attention (FFN) sublayer (``pruned_roberta`` records 0)."""
    from ..models.pruned_roberta import SkippedAttention, keep_ffn, keep_heads, record_shapes, skip_attention, skip_ffn

    for i, (layer, k, m) in enumerate(zip(encoder_layers(model), kept["heads"], kept["ffn"])):
        if k > layer.self_attn.num_heads or m > layer.fc1.out_features:
            raise ValueError(f"layer {i} has {layer.self_attn.num_heads} heads and {layer.fc1.out_features} "
                             f"neurons: it cannot keep {k} and {m} (a level below the model's own sparsity)")
        if k == 0:
            if not isinstance(layer.self_attn, SkippedAttention):
                skip_attention(layer)
        elif k < layer.self_attn.num_heads:
            keep_heads(layer.self_attn, range(k))
        if m == 0:
            if layer.fc1.out_features:
                skip_ffn(layer)
        elif m < layer.fc1.out_features:
            keep_ffn(layer, range(m))
    record_shapes(model)


def sparsity_summary(smap: dict) -> Dict[str, List[int]]:
    """``{"s": [total heads, total neurons]}`` of each level, for logs."""
    return {str(lv["sparsity"]): [sum(lv["heads"]), sum(lv["ffn"])] for lv in smap["levels"]}


MAP_KEY = "sparsity_map"  # the checkpoint's top-level entry (fairseq ignores it)


def load_sparsity_map(checkpoint: str) -> dict:
    """The sparsity map ``distill-sparsify`` stored in ``checkpoint``."""
    from fairseq import checkpoint_utils

    state = checkpoint_utils.load_checkpoint_to_cpu(checkpoint)
    smap = state.get(MAP_KEY)
    if not smap or smap.get("format") != FORMAT:
        raise ValueError(f"{checkpoint} has no sparsity map: make it with distill-sparsify")
    return smap


def parse_grid(value) -> List[float]:
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    try:
        return [float(v) for v in value]
    except ValueError:
        raise ValueError(f"--grid {value!r}: comma-separated sparsities in percent, e.g. 0,10,50,90") from None


def read_map(path: str) -> dict:
    """A sparsity map from ``sparsity.json`` or from a checkpoint that carries one."""
    import json

    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            smap = json.load(f)
        if not isinstance(smap, dict) or smap.get("format") != FORMAT:
            raise ValueError(f"{path} is not a sparsity map (from distill-sparsify)")
        return smap
    return load_sparsity_map(path)


def sparsify_checkpoint(checkpoint: str, importance_path: str, output_dir: str, grid=DEFAULT_GRID,
                        multiple: int = 8, densify_at=None, map_path: str = "") -> dict:
    """``checkpoint``, reordered by the importance scores (same function) with its sparsity map ->
    ``output_dir/model.pt`` (``pruned_roberta``; the map in the checkpoint and in
    ``sparsity.json``).  ``densify_at``: sliced to that grid sparsity instead; its map keeps the
    levels at or above it (counts of the original layers, which the sliced model's prefixes are).
    Without ``importance_path`` the model is reordered already: it is sliced by ``map_path`` (a
    ``sparsity.json`` or a checkpoint with a map) or by its own map."""
    import json

    from .encoder_checkpoint import file_digest, load_encoder, save_encoder
    from .importance import load_importance
    from .prune import check_importance

    model, state, args = load_encoder(checkpoint)
    if importance_path:
        scores = load_importance(importance_path)
        if scores.get("checkpoint_sha256") != file_digest(checkpoint):
            raise ValueError(f"{importance_path} scores {scores.get('checkpoint')}, not {checkpoint} (their "
                             f"contents differ): run distill-importance on the checkpoint you sparsify")
        check_importance(scores, model, importance_path)
        if scores.get("method") != "mask":
            logger.warning("%s holds %s scores; MiniDisc ranks by mask gradients (distill-importance --method "
                           "mask)", importance_path, scores.get("method", "taylor"))
        ho, fo = descending_orders(scores["heads"]), descending_orders(scores["ffn"])
        reorder(model, ho, fo)
        heads = [[row[i] for i in o] for row, o in zip(scores["heads"], ho)]
        ffn = [[row[i] for i in o] for row, o in zip(scores["ffn"], fo)]
        smap = sparsity_map(heads, ffn, parse_grid(grid), multiple)
        smap.update(source=checkpoint, importance=importance_path, head_order=ho, ffn_order=fo)
    else:  # an already reordered model (distill-sparsify's, or an assistant trained from one): its map
        if densify_at is None:
            raise ValueError("without --importance, give --densify S: the checkpoint's own map is sliced")
        if map_path:  # a model trained from a reordered one: fairseq's checkpoints drop the map
            smap = dict(read_map(map_path))
        else:
            smap = state.get(MAP_KEY)
            if not smap or smap.get("format") != FORMAT:
                raise ValueError(f"{checkpoint} has no sparsity map: pass --importance to make one, or --map")
            smap = dict(smap)
    if densify_at is not None:
        kept = level(smap, float(densify_at))
        densify(model, kept)
        smap["levels"] = [lv for lv in smap["levels"] if float(lv["sparsity"]) >= float(densify_at)]
        smap["grid"] = [lv["sparsity"] for lv in smap["levels"]]
        smap["densified_at"] = kept["sparsity"]
    summary = {"output": output_dir, "levels": sparsity_summary(smap), "densified_at": smap.get("densified_at"),
               "parameters": sum(p.numel() for p in model.parameters())}
    save_encoder(model, state, args, output_dir, extra_files={"sparsity.json": json.dumps(smap, indent=1) + "\n"},
                 extra_keys={MAP_KEY: smap})
    logger.info("sparsified %s -> %s/model.pt (grid %s%s)", checkpoint, output_dir, smap["grid"],
                f", dense at {smap['densified_at']}" if densify_at is not None else "")
    return summary
