"""MiniDisc's sparsification on tiny random models: mask-gradient importance against finite
differences, reordering against the model before it, the weight-shared view against the sliced
(dense) model and a rebuild from its config alone, the sparsity map against hand counts."""

import copy

import pytest
import torch

from test_layerwise import HEAD, logits, tiny_args, tiny_model, tokens
from user_dir.compress.sparsity import (
    densify,
    descending_orders,
    encoder_layers,
    level,
    mask_importance,
    masked,
    masked_view,
    reorder,
    sparsity_map,
    view,
)
from user_dir.models.pruned_roberta import PrunedRobertaModel, layer_shapes
from user_dir.models.transformer_outputs import classifier_outputs

LABELS = torch.tensor([0, 2, 1, 1])


def ce(model, tok):
    return torch.nn.functional.cross_entropy(classifier_outputs(model, tok, HEAD).logits, LABELS)


def test_mask_gradients_match_finite_differences_and_rows_are_normalised(float64_fairseq):
    model = tiny_model().double()
    tok = tokens()
    batch = {"tok": tok, "nsentences": 4}
    scores = mask_importance(model, [batch], lambda m, s: ce(m, s["tok"]))
    L = 3
    eps = 1e-5  # float64 throughout (the fixture): truncation ~eps**2, rounding ~1e-16/eps = 1e-11

    def loss_with(kind, layer, i, delta):
        hm = [torch.ones(4, dtype=torch.double) for _ in range(L)]
        fm = [torch.ones(32, dtype=torch.double) for _ in range(L)]
        (hm if kind == "heads" else fm)[layer][i] += delta
        with torch.no_grad(), masked(model, hm, fm):
            return float(ce(model, tok))

    for kind, n in (("heads", 4), ("ffn", 32)):
        for layer in range(L):
            for i in range(0, n, max(1, n // 4)):
                fd = (loss_with(kind, layer, i, eps) - loss_with(kind, layer, i, -eps)) / (2 * eps)
                assert scores["raw_" + kind][layer][i] == pytest.approx(abs(fd), rel=1e-6, abs=1e-10), (kind, layer, i)
    for kind in ("heads", "ffn"):
        for raw, row in zip(scores["raw_" + kind], scores[kind]):
            norm = sum(r * r for r in raw) ** 0.5
            assert row == pytest.approx([r / norm for r in raw])
            assert sum(x * x for x in row) == pytest.approx(1.0)
    # two batches: the sum of each batch's |gradient|, not the |gradient| of the summed loss
    two = mask_importance(model, [batch, batch], lambda m, s: ce(m, s["tok"]))
    assert two["raw_heads"][0] == pytest.approx([2 * x for x in scores["raw_heads"][0]])
    assert all(p.grad is None for p in model.parameters())


def test_reorder_keeps_the_function_and_puts_the_best_first():
    model = tiny_model()
    tok = tokens()
    before = logits(model, tok)
    scores = mask_importance(model, [{"tok": tok, "nsentences": 4}], lambda m, s: ce(m, s["tok"]))
    ho, fo = descending_orders(scores["heads"]), descending_orders(scores["ffn"])
    assert any(o != sorted(o) for o in ho + fo)  # a real permutation
    reorder(model, ho, fo)
    torch.testing.assert_close(logits(model, tok), before, atol=1e-6, rtol=0)
    after = mask_importance(model, [{"tok": tok, "nsentences": 4}], lambda m, s: ce(m, s["tok"]))
    for kind, order in (("heads", ho), ("ffn", fo)):
        for layer, row in enumerate(after[kind]):
            assert row == pytest.approx([scores[kind][layer][i] for i in order[layer]], rel=1e-4, abs=1e-7)
            assert all(a >= b - 1e-6 for a, b in zip(row, row[1:]))  # best first
    with pytest.raises(ValueError, match="permutation"):
        reorder(model, [[0, 0, 1, 2]] * 3, fo)


def test_view_equals_the_dense_model_and_the_dense_model_rebuilds_from_its_config():
    model = tiny_model()
    tok = tokens()
    g = torch.Generator().manual_seed(3)
    reorder(model, [torch.randperm(4, generator=g).tolist() for _ in range(3)],
            [torch.randperm(32, generator=g).tolist() for _ in range(3)])
    for kept in ({"heads": [4, 4, 4], "ffn": [32, 32, 32]},
                 {"heads": [3, 1, 2], "ffn": [24, 8, 16]},
                 {"heads": [0, 2, 1], "ffn": [16, 0, 8]}):  # skipped sublayers
        with torch.no_grad(), view(model, kept):
            shared = logits(model, tok)
        dense = copy.deepcopy(model)
        densify(dense, kept)
        assert layer_shapes(dense)["layer_heads"] == kept["heads"]
        assert layer_shapes(dense)["layer_ffn_dims"] == kept["ffn"]
        torch.testing.assert_close(logits(dense, tok), shared, atol=1e-5, rtol=0)
        # the saved config alone rebuilds the shapes, and the weights load into them
        args = tiny_args(layer_heads=",".join(map(str, kept["heads"])),
                         layer_ffn_dims=",".join(map(str, kept["ffn"])))
        rebuilt = PrunedRobertaModel.build_model(args, _task())
        rebuilt.register_classification_head(HEAD, 3)
        rebuilt.load_state_dict(dense.state_dict())
        torch.testing.assert_close(logits(rebuilt.eval(), tok), shared, atol=1e-5, rtol=0)
        # and a full-size model shrinks to the state's shapes when loading it (a resumed run)
        grown = tiny_model(seed=5)
        grown.load_state_dict(dense.state_dict())
        torch.testing.assert_close(logits(grown.eval(), tok), shared, atol=1e-5, rtol=0)
    # a dense model with skipped sublayers still takes views and scores (layers' empty rows stay empty)
    smaller = {"heads": [0, 1, 1], "ffn": [8, 0, 8]}
    with torch.no_grad(), view(dense, smaller):
        shared = logits(dense, tok)
    again = copy.deepcopy(dense)
    densify(again, smaller)
    torch.testing.assert_close(logits(again, tok), shared, atol=1e-5, rtol=0)
    scores = mask_importance(dense, [{"tok": tok, "nsentences": 4}], lambda m, s: ce(m, s["tok"]))
    assert [len(h) for h in scores["heads"]] == [0, 2, 1] and [len(f) for f in scores["ffn"]] == [16, 0, 8]
    with pytest.raises(ValueError, match="cannot keep 2"):
        densify(copy.deepcopy(dense), {"heads": [2, 2, 1], "ffn": [16, 0, 8]})
    # the view leaves no trace: the full model again
    full = copy.deepcopy(model)
    with torch.no_grad(), view(model, {"heads": [1, 1, 1], "ffn": [8, 8, 8]}):
        pass
    torch.testing.assert_close(logits(model, tok), logits(full, tok), atol=0, rtol=0)
    with pytest.raises(ValueError, match="keeps 5 heads"):
        view(model, {"heads": [5, 4, 4], "ffn": [32, 32, 32]})


def test_sliced_view_matches_the_masked_view_in_outputs_and_gradients():
    """The sliced view (what sandwich training runs) against masks over the full width: the same
    logits and the same gradient on every parameter (zero on what the level drops), in train mode
    (dropout 0)."""
    model = tiny_model().train()
    tok = tokens()
    for kept in ({"heads": [3, 1, 2], "ffn": [24, 8, 16]}, {"heads": [0, 2, 4], "ffn": [16, 0, 32]}):
        grads = []
        for context in (view, masked_view):
            model.zero_grad()
            with context(model, kept):
                out = logits(model, tok)
                ce(model, tok).backward()
            grads.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                         if p.grad is not None}))
        (a, ga), (b, gb) = grads
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        assert ga.keys() <= gb.keys()  # a skipped sublayer's parameters get no gradient, masks give zeros
        for n, p in model.named_parameters():
            if n in gb:
                torch.testing.assert_close(ga.get(n, torch.zeros_like(p)), gb[n], atol=1e-6, rtol=1e-4, msg=n)
        layer1 = encoder_layers(model)[1]
        hd = layer1.self_attn.head_dim
        k = kept["heads"][1]
        assert ga["encoder.sentence_encoder.layers.1.self_attn.q_proj.weight"][k * hd:].abs().sum() == 0
        assert ga["encoder.sentence_encoder.layers.1.self_attn.q_proj.weight"][:k * hd].abs().sum() > 0
        assert layer1.self_attn.num_heads == 4 and "forward" not in vars(layer1.fc1)  # nothing left behind


def _task():
    from test_layerwise import _Task, _Vocabulary

    return _Task(_Vocabulary(50))


def test_sparsity_map_by_hand():
    heads = [[0.9, 0.5, 0.3, 0.1], [0.8, 0.7, 0.6, 0.2]]  # 8 heads
    ffn = [[1.0 - i / 40 for i in range(16)], [0.5 - i / 40 for i in range(16)]]  # layer 1 lower
    smap = sparsity_map(heads, ffn, grid=[95, 10, 50, 5, 0], multiple=8)
    assert smap["grid"] == [0, 5, 10, 50, 95]  # numbers, in numeric order (not "10" < "5")
    by = {lv["sparsity"]: lv for lv in smap["levels"]}
    assert by[0] == {"sparsity": 0, "heads": [4, 4], "ffn": [16, 16]}
    # 10%: round(0.8) = 1 head (0.1, layer 0); round(3.2) = 3 neurons, all layer 1's -> 3 rounds to 0
    assert by[10]["heads"] == [3, 4] and by[10]["ffn"] == [16, 16]
    # 50%: 4 heads (0.1, 0.2, 0.3, 0.5); 16 neurons: layer 1's lowest 16 are all of layer 1 but
    # layer 0's 1.0-i/40 >= 0.625 beat layer 1's <= 0.5, so layer 1 loses all 16
    assert by[50]["heads"] == [1, 3] and by[50]["ffn"] == [16, 0]
    # 95%: round(7.6) = 8 heads -> none left; round(30.4) = 30 neurons: 16 of layer 1, 14 of
    # layer 0 -> 16 (a multiple of 8)
    assert by[95]["heads"] == [0, 0] and by[95]["ffn"] == [0, 0]
    assert by[5]["ffn"] == [16, 16]  # 2 removed -> rounds to 0
    assert level(smap, 50.0) is by[50] and level(smap, "95") is by[95]
    with pytest.raises(ValueError, match="not on the map's grid"):
        level(smap, 90)
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        sparsity_map(heads, ffn, grid=[100])


def test_importance_and_sparsify_tools_on_a_fine_tuned_minilm(finetuned_teacher, tmp_path):
    """distill-importance --method mask, distill-sparsify (reorder + map), --densify 90: the sliced
    checkpoint loads alone and computes what the weight-shared view computes."""
    import json

    from conftest import run
    from user_dir.compress.encoder_checkpoint import load_encoder
    from user_dir.compress.sparsity import load_sparsity_map

    teacher = finetuned_teacher["dir"] / "checkpoint_best.pt"
    data = finetuned_teacher["work"] / "data-bin"
    run(["distill-importance", "--checkpoint", teacher, "--data", data, "--split", "valid", "--method", "mask",
         "--batch-size", "16", "--output", tmp_path / "imp.json"])
    scores = json.loads((tmp_path / "imp.json").read_text())
    assert scores["method"] == "mask" and scores["split"] == "valid" and scores["sentences"] == 64
    assert all(sum(x * x for x in row) == pytest.approx(1.0) for row in scores["heads"] + scores["ffn"])

    run(["distill-sparsify", "--checkpoint", teacher, "--importance", tmp_path / "imp.json",
         "--output", tmp_path / "sp"])
    smap = json.loads((tmp_path / "sp" / "sparsity.json").read_text())
    assert load_sparsity_map(str(tmp_path / "sp" / "model.pt")) == smap
    assert smap["grid"] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95]
    lv90 = level(smap, 90)
    assert sum(lv90["heads"]) == round(0.1 * 72)  # 7 of 6 x 12 heads kept
    assert all(f % 8 == 0 for f in lv90["ffn"]) and abs(sum(lv90["ffn"]) - 0.1 * 6 * 1536) <= 4 * 6
    head = "sentence_classification_head"
    g = torch.Generator().manual_seed(0)
    tok = torch.randint(5, 1000, (3, 12), generator=g)
    tok[:, 0] = 0
    original, _, _ = load_encoder(str(teacher))
    reordered, _, _ = load_encoder(str(tmp_path / "sp" / "model.pt"))
    with torch.no_grad():
        want = classifier_outputs(original, tok, head).logits
        torch.testing.assert_close(classifier_outputs(reordered, tok, head).logits, want, atol=1e-5, rtol=0)
        with view(reordered, lv90):
            shared = classifier_outputs(reordered, tok, head).logits

    run(["distill-sparsify", "--checkpoint", teacher, "--importance", tmp_path / "imp.json",
         "--output", tmp_path / "d90", "--densify", "90"])
    dense, _, _ = load_encoder(str(tmp_path / "d90" / "model.pt"))
    assert layer_shapes(dense)["layer_heads"] == lv90["heads"] and layer_shapes(dense)["layer_ffn_dims"] == lv90["ffn"]
    with torch.no_grad():
        torch.testing.assert_close(classifier_outputs(dense, tok, head).logits, shared, atol=1e-4, rtol=0)
    d_map = load_sparsity_map(str(tmp_path / "d90" / "model.pt"))
    assert d_map["grid"] == [90, 95] and d_map["densified_at"] == 90
    assert f"--layer-heads {','.join(map(str, lv90['heads']))}" in (tmp_path / "d90" / "model-args.txt").read_text()
    # an already reordered model is sliced by a map without scores: its own, or --map's
    run(["distill-sparsify", "--checkpoint", tmp_path / "sp" / "model.pt", "--densify", "90", "--output", tmp_path / "m90"])
    run(["distill-sparsify", "--checkpoint", tmp_path / "sp" / "model.pt", "--densify", "95",
         "--map", tmp_path / "sp" / "sparsity.json", "--output", tmp_path / "m95"])
    m90, _, _ = load_encoder(str(tmp_path / "m90" / "model.pt"))
    m95, _, _ = load_encoder(str(tmp_path / "m95" / "model.pt"))
    assert layer_shapes(m95)["layer_heads"] == level(smap, 95)["heads"]
    with torch.no_grad():
        torch.testing.assert_close(classifier_outputs(m90, tok, head).logits, shared, atol=1e-4, rtol=0)
    bad = run(["distill-sparsify", "--checkpoint", teacher, "--importance", tmp_path / "imp.json",
               "--output", tmp_path / "bad", "--densify", "75"], check=False)
    assert bad.returncode != 0 and "not on the map's grid" in bad.stderr
