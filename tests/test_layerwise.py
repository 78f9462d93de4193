"""The transformer-student base on tiny random models: losses, layer maps, outputs, pruning, importance.

Every check is against an independent computation: numpy by hand, a finite
difference, or the full model with the pruned parts zeroed.
"""

import copy
import warnings

import numpy as np
import pytest
import torch

import user_dir  # noqa: F401  (registration)
from user_dir.compress.encoder_checkpoint import _Task, _Vocabulary, load_encoder, save_encoder
from user_dir.compress.importance import taylor_importance
from user_dir.compress.prune import prune, top_indices, truncated_svd
from user_dir.criterions import distillation_losses as L
from user_dir.criterions.layerwise_distillation import layer_map
from user_dir.models.pruned_roberta import PrunedRobertaModel, layer_shapes, parse_widths
from user_dir.models.transformer_outputs import classifier_outputs

HEAD = "sentence_classification_head"


def tiny_args(**flags):
    from fairseq import options

    argv = ["/tmp", "--task", "glue_distillation", "--num-classes", "3", "--arch", "pruned_roberta",
            "--encoder-layers", "3", "--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
            "--encoder-attention-heads", "4", "--max-positions", "20", "--dropout", "0",
            "--attention-dropout", "0"]
    for k, v in flags.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return options.parse_args_and_arch(options.get_training_parser(), argv)


def tiny_model(seed=0, **flags):
    torch.manual_seed(seed)
    model = PrunedRobertaModel.build_model(tiny_args(**flags), _Task(_Vocabulary(50)))
    model.register_classification_head(HEAD, 3)
    return model.eval()


def tokens(seed=1):
    g = torch.Generator().manual_seed(seed)
    tok = torch.randint(4, 50, (4, 9), generator=g)
    tok[:, 0] = 0
    tok[1, 6:] = 1  # padding
    tok[3, 4:] = 1
    return tok


def logits(model, tok):
    return classifier_outputs(model, tok, HEAD).logits.detach()


# ------------------------------------------------------------------ losses

def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_prediction_losses_match_hand_computation():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    S, T_ = torch.tensor(s), torch.tensor(t)
    for T in (1.0, 2.5):
        ps, pt = softmax(s / T), softmax(t / T)
        kl = (pt * (np.log(pt) - np.log(ps))).sum() * T * T
        term = L.prediction_kl(S, T_, T)
        assert term.count == 5 and term.sum.item() == pytest.approx(kl, rel=1e-5)
        assert L.soft_cross_entropy(S, T_, T).sum.item() == pytest.approx(-(pt * np.log(ps)).sum(), rel=1e-5)
    assert L.logit_mse(S, T_).sum.item() == pytest.approx(((s - t) ** 2).sum(), rel=1e-5)
    y = np.array([0, 2, 1, 1, 0])
    ce = -np.log(softmax(s)[np.arange(5), y]).sum()
    assert L.cross_entropy(S, torch.tensor(y)).sum.item() == pytest.approx(ce, rel=1e-5)


def test_hidden_and_attention_losses_match_hand_computation():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3))
    pad = np.array([[0, 0, 0, 1], [0, 0, 1, 1]], dtype=bool)
    A, B, P = torch.tensor(a), torch.tensor(b), torch.tensor(pad)
    keep = ~pad
    term = L.hidden_mse(A, B, P)
    assert term.count == keep.sum() * 3
    assert term.sum.item() == pytest.approx(((a - b) ** 2)[keep].sum(), rel=1e-6)
    assert L.hidden_mse(A, B).mean.item() == pytest.approx(((a - b) ** 2).mean(), rel=1e-6)
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert L.cosine(A, B, P).sum.item() == pytest.approx((1 - cos)[keep].sum(), rel=1e-5)
    sa, ta = softmax(rng.normal(size=(2, 2, 4, 4))), softmax(rng.normal(size=(2, 2, 4, 4)))
    SA, TA = torch.tensor(sa), torch.tensor(ta)
    rows = np.broadcast_to(keep[:, None, :], (2, 2, 4))
    mse = L.attention_mse(SA, TA, P)
    assert mse.count == rows.sum() * 4
    assert mse.sum.item() == pytest.approx(((sa - ta) ** 2).sum(-1)[rows].sum(), rel=1e-6)
    kl = (ta * (np.log(ta) - np.log(sa))).sum(-1)
    got = L.attention_kl(SA, TA, P)
    assert got.count == rows.sum() and got.sum.item() == pytest.approx(kl[rows].sum(), rel=1e-5)
    # weighted: sum_i w_i mean_i, times the sample size
    total = L.weighted([L.Term(torch.tensor(6.0), 3), L.Term(torch.tensor(1.0), 4)], [0.5, 2.0], 8)
    assert total.item() == pytest.approx((0.5 * 2 + 2 * 0.25) * 8)
    with pytest.raises(ValueError, match="weight 0"):
        L.weighted([L.Term(torch.tensor(1.0), 1)], [0.0], 1)


# -------------------------------------------------------------- layer maps

def test_layer_map_rules():
    assert layer_map("drop", 4, 6) == [0, 1, 3, 4, 6]  # ROSITA's rule for 6 -> 4
    assert layer_map("drop", 8, 12) == [0, 1, 3, 4, 6, 7, 9, 10, 12]  # ... and its paper's 12 -> 8
    assert layer_map("drop", 3, 6) == layer_map("uniform", 3, 6) == [0, 2, 4, 6]
    assert layer_map("uniform", 4, 12) == [0, 3, 6, 9, 12]
    assert layer_map("bottom", 4, 6) == [0, 1, 2, 3, 4]
    assert layer_map("drop", 6, 6) == list(range(7))
    assert layer_map("0,2,3,6", 3, 6) == [0, 2, 3, 6]
    with pytest.raises(ValueError, match="divide"):
        layer_map("uniform", 4, 6)
    with pytest.raises(ValueError, match="names teacher states \\[7\\]"):
        layer_map("0,2,4,7", 3, 6)
    with pytest.raises(ValueError, match="4 entries; the student has 5"):
        layer_map("0,1,2,3", 4, 6)
    with pytest.raises(ValueError, match="one of"):
        layer_map("every-other", 4, 6)
    with pytest.raises(ValueError, match="only 6"):
        layer_map("bottom", 8, 6)


# ----------------------------------------------------------------- outputs

def test_outputs_hidden_states_and_attention_maps():
    model = tiny_model()
    tok = tokens()
    out = classifier_outputs(model, tok, HEAD, hidden=True, attention=True)
    assert len(out.hidden_states) == 4 and len(out.attentions) == 3
    assert torch.equal(out.padding_mask, tok.eq(1))
    # the head reads the last state's <s>
    head = model.classification_heads[HEAD]
    assert torch.allclose(head(out.hidden_states[-1]), out.logits, atol=1e-6)
    # layer 0's maps from its input by hand: softmax(q k^T / sqrt(d_h)), padding keys masked
    attn = model.encoder.sentence_encoder.layers[0].self_attn
    x = out.hidden_states[0]
    B, T, _ = x.shape
    q = attn.q_proj(x).view(B, T, 4, 4).transpose(1, 2) * 4 ** -0.5
    k = attn.k_proj(x).view(B, T, 4, 4).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)).masked_fill(tok.eq(1)[:, None, None, :], float("-inf"))
    assert torch.allclose(out.attentions[0], scores.softmax(-1), atol=1e-6)
    # asking for maps changes nothing else
    assert torch.allclose(logits(model, tok), out.logits, atol=1e-6)
    assert not attn.skip_embed_dim_check  # the hooks and the slow path are undone


# ----------------------------------------------------------------- pruning

def zero_pruned(model, kept):
    """The full model with every pruned head, neuron and layer cut out by zeros / removal."""
    ref = copy.deepcopy(model)
    enc = ref.encoder.sentence_encoder
    with torch.no_grad():
        for i, layer in enumerate(enc.layers):
            if i not in kept["layers"]:
                continue
            j = kept["layers"].index(i)
            a, hd = layer.self_attn, layer.self_attn.head_dim
            for h in range(a.num_heads):
                if h not in kept["heads"][j]:
                    for proj in (a.q_proj, a.k_proj, a.v_proj):
                        proj.weight[h * hd:(h + 1) * hd] = 0
                        proj.bias[h * hd:(h + 1) * hd] = 0
                    a.out_proj.weight[:, h * hd:(h + 1) * hd] = 0
    enc.layers = torch.nn.ModuleList([enc.layers[i] for i in kept["layers"]])
    return ref


def test_prune_to_full_size_changes_nothing():
    model = tiny_model()
    before = logits(model, tokens())
    kept = prune(model, layers=[0, 1, 2], keep_heads_per_layer=4, ffn_dim=32)
    assert kept["shapes"] == layer_shapes(tiny_model())
    assert torch.allclose(logits(model, tokens()), before, atol=1e-5)


def test_pruned_heads_and_layers_equal_zeroed_heads():
    model = tiny_model()
    scores = {"heads": [[0.1, 3, 2, 0.5], [5, 1, 0.2, 4], [1, 1, 1, 1]], "ffn": [list(range(32))] * 3}
    pruned = copy.deepcopy(model)
    kept = prune(pruned, layers=[0, 1], keep_heads_per_layer=2, importance=scores)
    assert kept["heads"] == [[1, 2], [0, 3]]
    assert layer_shapes(pruned)["layer_heads"] == [2, 2]
    ref = zero_pruned(model, kept)
    assert torch.allclose(logits(pruned, tokens()), logits(ref, tokens()), atol=1e-5)


def test_pruned_ffn_equals_zeroed_neurons():
    model = tiny_model()
    rng = np.random.default_rng(3)
    scores = {"heads": [[1] * 4] * 3, "ffn": rng.random((3, 32)).tolist()}
    pruned = copy.deepcopy(model)
    prune(pruned, ffn_dim=10, importance=scores)
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for layer, s in zip(ref.encoder.sentence_encoder.layers, scores["ffn"]):
            drop = [i for i in range(32) if i not in top_indices(s, 10)]
            layer.fc1.weight[drop] = 0
            layer.fc1.bias[drop] = 0  # gelu(0) = 0: the neuron adds nothing
            layer.fc2.weight[:, drop] = 0
    assert layer_shapes(pruned)["layer_ffn_dims"] == [10, 10, 10]
    assert torch.allclose(logits(pruned, tokens()), logits(ref, tokens()), atol=1e-5)


def test_embedding_rank_is_the_best_low_rank_approximation():
    model = tiny_model()
    pruned = copy.deepcopy(model)
    prune(pruned, embed_rank=5)
    ref = copy.deepcopy(model)
    w = model.encoder.sentence_encoder.embed_tokens.weight.detach().double().numpy()
    U, S, Vt = np.linalg.svd(w, full_matrices=False)
    with torch.no_grad():
        ref.encoder.sentence_encoder.embed_tokens.weight.copy_(torch.tensor((U[:, :5] * S[:5]) @ Vt[:5]))
    assert torch.allclose(logits(pruned, tokens()), logits(ref, tokens()), atol=1e-5)
    emb = pruned.encoder.sentence_encoder.embed_tokens
    assert emb.rank == 5 and pruned.encoder.lm_head is None
    # a factorised embedding is cut further by its first columns, without a new SVD
    e, p = emb.embed.weight.detach().clone(), emb.proj.weight.detach().clone()
    prune(pruned, embed_rank=3)
    assert torch.equal(pruned.encoder.sentence_encoder.embed_tokens.embed.weight, e[:, :3])
    assert torch.equal(pruned.encoder.sentence_encoder.embed_tokens.proj.weight, p[:, :3])
    with pytest.raises(ValueError, match="exceeds"):
        prune(pruned, embed_rank=4)


def test_prune_refusals():
    model = tiny_model()
    with pytest.raises(ValueError, match="--importance"):
        prune(model, keep_heads_per_layer=2)
    with pytest.raises(ValueError, match="distinct indices in 0..2"):
        prune(model, layers=[0, 3])
    with pytest.raises(ValueError, match="3 values for 2 layers"):
        parse_widths("1,2,3", 2, 4, "--layer-heads")
    u, v = truncated_svd(torch.eye(4), 2)
    assert u.shape == (4, 2) and v.shape == (4, 2)


def test_pruned_checkpoint_round_trip(tmp_path):
    """save -> load rebuilds the shapes from the checkpoint alone, and the same outputs."""
    model = tiny_model()
    scores = {"heads": [[4, 3, 2, 1]] * 3, "ffn": [list(range(32))] * 3}
    prune(model, layers=[0, 2], keep_heads_per_layer=3, ffn_dim=12, embed_rank=6, importance=scores)
    state = {"cfg": {"model": tiny_args(), "task": {"_name": "glue_distillation"}}}
    save_encoder(model, state, tiny_args(), str(tmp_path / "p"))
    loaded, _, args = load_encoder(str(tmp_path / "p" / "model.pt"))
    assert layer_shapes(loaded) == layer_shapes(model)
    assert args.layer_heads == "3,3" and args.layer_ffn_dims == "12,12" and args.embed_rank == 6
    assert torch.allclose(logits(loaded, tokens()), logits(model, tokens()), atol=1e-6)
    flags = (tmp_path / "p" / "model-args.txt").read_text().split()
    assert flags[:2] == ["--arch", "pruned_roberta"] and "--layer-heads" in flags
    rebuilt = PrunedRobertaModel.build_model(tiny_args(**dict(zip(
        [f[2:].replace("-", "_") for f in flags[2::2]], flags[3::2]))), _Task(_Vocabulary(50)))
    assert layer_shapes(rebuilt) == layer_shapes(model)


# -------------------------------------------------------------- importance

def test_taylor_importance_against_finite_differences(float64_fairseq):
    # float64 throughout (the fixture), central differences of 1e-5
    model = tiny_model().double()
    batches = [{"tok": tokens(s), "y": torch.tensor([0, 1, 2, 1]), "nsentences": 4} for s in (1, 2)]

    def loss_fn(m, b):
        return L.cross_entropy(classifier_outputs(m, b["tok"], HEAD).logits, b["y"]).mean

    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = taylor_importance(model, batches, loss_fn)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # weights untouched
    assert scores["batches"] == 2 and scores["sentences"] == 8
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())
    layer = model.encoder.sentence_encoder.layers[1]

    def fd_abs_grad_sum(weight, index):
        total = 0.0
        for b in batches:
            with torch.no_grad():
                old = weight[index].item()
                weight[index] = old + 1e-5
                up = loss_fn(model, b).item()
                weight[index] = old - 1e-5
                down = loss_fn(model, b).item()
                weight[index] = old
            total += abs(up - down) / 2e-5
        return total

    hd = layer.self_attn.head_dim
    w = layer.self_attn.out_proj.weight
    h = 2
    expected = sum(abs(w[r, c].item()) * fd_abs_grad_sum(w, (r, c))
                   for r in range(w.shape[0]) for c in range(h * hd, (h + 1) * hd))
    assert scores["heads"][1][h] == pytest.approx(expected, rel=1e-6)
    n = 7
    expected = sum(abs(layer.fc1.weight[n, c].item()) * fd_abs_grad_sum(layer.fc1.weight, (n, c))
                   for c in range(16))
    expected += sum(abs(layer.fc2.weight[r, n].item()) * fd_abs_grad_sum(layer.fc2.weight, (r, n))
                    for r in range(16))
    assert scores["ffn"][1][n] == pytest.approx(expected, rel=1e-6)


def test_export_refuses_ffn_widths_that_differ_by_layer():
    from user_dir.inference.hf_export import bert_config

    model = tiny_model(layer_ffn_dims="32,16,32")
    with pytest.raises(ValueError, match="layer 1 has FFN width 16, layer 0 32"):
        bert_config(model, tiny_args(), 3, ["a", "b", "c"], True)
    config = bert_config(tiny_model(layer_heads="4,2,1"), tiny_args(), 3, ["a", "b", "c"], True)
    assert config["intermediate_size"] == 32 and config["distill_kept_heads"] == {"0": 4, "1": 2, "2": 1}
