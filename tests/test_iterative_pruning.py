"""Iterative pruning's parts on tiny random models: the schedule, in-place cuts, the optimizer's state.

Checked against independent computations: the schedule by hand (ROSITA's
formulas), an in-place cut against the one-step ``prune`` of a copy, Adam's
moments against the same slices of the moments before the cut, and a step after
the cut against Adam run from scratch on the cut tensors.
"""

import copy

import pytest
import torch

from test_layerwise import logits, tiny_model, tokens
from user_dir.compress.importance import structure_scores
from user_dir.compress.iterative import (
    IterativePruner,
    drop_top_layers,
    keep_ffn_inplace,
    keep_heads_inplace,
    keep_rank_inplace,
    schedule,
)
from user_dir.compress.prune import prune
from user_dir.models.pruned_roberta import keep_ffn, keep_heads, layer_shapes, shrink_to_state
from user_dir.models.transformer_outputs import classifier_outputs

HEAD = "sentence_classification_head"


def shapes(layers=3, heads=4, ffn=32, rank=16):
    return {"encoder_layers": layers, "layer_heads": [heads] * layers, "layer_ffn_dims": [ffn] * layers,
            "embed_rank": rank}


def test_width_and_depth_schedules_by_hand():
    # 3 steps (4 -> 1 heads) within 0.3 of 100 updates: period int(30 / 3) = 10
    steps = schedule("width", shapes(), 100, 0.3, heads=1, ffn_dim=8, embed_rank=4)
    assert [s["update"] for s in steps] == [10, 20, 30]
    assert [s["heads"] for s in steps] == [[3] * 3, [2] * 3, [1] * 3]
    assert [s["ffn"] for s in steps] == [[24] * 3, [16] * 3, [8] * 3]  # 32 - 24 t / 3
    assert [s["embed_rank"] for s in steps] == [12, 8, 4]
    assert all(s["layers"] == 3 for s in steps)
    # a target of 0 keeps that dimension
    assert all(s["ffn"] == [32] * 3 and s["embed_rank"] == 16
               for s in schedule("width", shapes(), 100, 0.3, heads=2))
    # depth: one top layer per step, 3 -> 1 in 2 steps, period int(0.5 * 10 / 2) = 2
    steps = schedule("depth", shapes(), 10, 0.5, layers=1)
    assert [(s["update"], s["layers"], len(s["heads"])) for s in steps] == [(2, 2, 2), (4, 1, 1)]
    # ROSITA's SST-2 setting 3: 12 -> 2 heads, 3072 -> 512, rank 768 -> 128, share 0.1
    bert = {"encoder_layers": 8, "layer_heads": [12] * 8, "layer_ffn_dims": [3072] * 8, "embed_rank": 768}
    steps = schedule("width", bert, 349510, 0.1, heads=2, ffn_dim=512, embed_rank=128)
    assert len(steps) == 10 and steps[0]["update"] == 3495 and steps[0]["ffn"][0] == 2816
    assert steps[0]["embed_rank"] == 704 and steps[-1]["ffn"][0] == 512


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="width", heads=0), "give --target-heads"),
    (dict(mode="width", heads=4), "below the model's heads"),
    (dict(mode="width", heads=2, ffn_dim=64), "--target-ffn-dim 64"),
    (dict(mode="width", heads=2, layers=2), "belongs to depth mode"),
    (dict(mode="depth", layers=3), "--target-layers in 1..2"),
    (dict(mode="depth", layers=1, heads=2), "width mode"),
    (dict(mode="width", heads=1, total=2), "do not fit"),
    (dict(mode="width", heads=1, total=0), "--max-update or --prune-total-updates"),
    (dict(mode="sideways", heads=1), "one of"),
])
def test_schedule_refusals(kwargs, message):
    kwargs = dict(kwargs)
    mode, total = kwargs.pop("mode"), kwargs.pop("total", 100)
    with pytest.raises(ValueError, match=message):
        schedule(mode, shapes(), total, 0.3, **kwargs)
    with pytest.raises(ValueError, match="factorise it first"):
        schedule("width", shapes(rank=0), 100, 0.3, heads=2, embed_rank=4)


def train_step(model, optimizer, tok, seed=0):
    torch.manual_seed(seed)
    optimizer.zero_grad()
    out = classifier_outputs(model, tok, HEAD).logits
    loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    return loss


def test_inplace_cut_equals_one_step_prune_and_slices_adam_moments():
    model = tiny_model(embed_rank=16).train()
    tok = tokens()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in range(2):
        train_step(model, opt, tok, i)
        opt.step()
    model.eval()
    heads, neurons = [[0, 2, 3], [1, 2, 3], [0, 1, 3]], [list(range(0, 32, 2))] * 3
    reference = copy.deepcopy(model)  # cut with fairseq's own hooks, which make new tensors
    for layer, h, n in zip(reference.encoder.sentence_encoder.layers, heads, neurons):
        keep_heads(layer.self_attn, h)
        keep_ffn(layer, n)
    prune(reference, embed_rank=8)  # a factorised embedding keeps its first columns

    layer0 = model.encoder.sentence_encoder.layers[0]
    q, out_w, fc2 = layer0.self_attn.q_proj.weight, layer0.self_attn.out_proj.weight, layer0.fc2.weight
    q_moment, out_moment = opt.state[q]["exp_avg"].clone(), opt.state[out_w]["exp_avg_sq"].clone()
    fc2_moment = opt.state[fc2]["exp_avg"].clone()
    params_before = list(model.parameters())
    for layer, h, n in zip(model.encoder.sentence_encoder.layers, heads, neurons):
        keep_heads_inplace(layer.self_attn, h, opt)
        keep_ffn_inplace(layer, n, opt)
    keep_rank_inplace(model.encoder.sentence_encoder.embed_tokens, 8, opt)

    assert layer_shapes(model) == layer_shapes(reference)
    torch.testing.assert_close(logits(model, tok), logits(reference, tok), atol=1e-6, rtol=0)
    # the same tensors (the optimizer's references hold), their moments sliced like the weights
    assert all(a is b for a, b in zip(model.parameters(), params_before))
    rows = torch.cat([torch.arange(h * 4, h * 4 + 4) for h in heads[0]])
    torch.testing.assert_close(opt.state[q]["exp_avg"], q_moment[rows])
    torch.testing.assert_close(opt.state[out_w]["exp_avg_sq"], out_moment[:, rows])
    torch.testing.assert_close(opt.state[fc2]["exp_avg"], fc2_moment[:, neurons[0]])
    # the next Adam step on the cut tensors is the step of Adam restarted with the sliced state
    fresh = copy.deepcopy(model)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    fresh_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # its tensors would be shared
    model.train(), fresh.train()
    train_step(model, opt, tok, 5)
    opt.step()
    train_step(fresh, fresh_opt, tok, 5)
    fresh_opt.step()
    for a, b in zip(model.parameters(), fresh.parameters()):
        torch.testing.assert_close(a, b)


def test_dropped_layers_leave_the_optimizer_and_shrink_to_state_reloads():
    model = tiny_model(embed_rank=16).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_step(model, opt, tokens())
    opt.step()
    top = list(model.encoder.sentence_encoder.layers[2].parameters())
    drop_top_layers(model, 2, opt)
    kept = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in kept for p in top) and not any(p in opt.state for p in top)
    assert kept == {id(p) for p in model.parameters()}
    keep_heads_inplace(model.encoder.sentence_encoder.layers[1].self_attn, [1, 3], opt)
    keep_rank_inplace(model.encoder.sentence_encoder.embed_tokens, 5, opt)
    state = model.state_dict()
    # a model built with the flags the run started from takes the smaller checkpoint
    again = tiny_model(seed=3, embed_rank=16)
    shrink_to_state(again, state)
    assert layer_shapes(again) == layer_shapes(model) == {
        "encoder_layers": 2, "layer_heads": [4, 2], "layer_ffn_dims": [32, 32], "embed_rank": 5}
    again.load_state_dict(state)
    torch.testing.assert_close(logits(again, tokens()), logits(model.eval(), tokens()))
    assert again.args.layer_heads == "4,2" and again.args.embed_rank == 5 and again.args.encoder_layers == 2


def test_pruner_keeps_the_most_important_and_round_trips_its_state():
    model = tiny_model(embed_rank=16).train()
    tok = tokens()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = schedule("width", layer_shapes(model), 20, 0.5, heads=2, ffn_dim=16, embed_rank=8)
    assert [s["update"] for s in steps] == [5, 10]
    pruner = IterativePruner(steps, "width")
    model.iterative_pruning = pruner
    expected = None
    for update in range(1, 6):
        train_step(model, opt, tok, update)
        scores = structure_scores(model)  # by hand: the sum over the period of |w * g|
        expected = scores if expected is None else [(a + c, b + d) for (a, b), (c, d) in zip(expected, scores)]
        pruner.accumulate(model)
        opt.step()
        entry = pruner.after_update(model, opt, update)
        assert (entry is None) == (update < 5)
    heads0 = expected[0][0]
    want = sorted(sorted(range(4), key=lambda i: (-float(heads0[i]), i))[:3])
    assert entry["heads"][0] == want and entry["ffn"] == [24] * 3 and entry["embed_rank"] == 12
    assert layer_shapes(model)["layer_heads"] == [3] * 3 and pruner.scores is None
    # its state rides in the model's state dict; another schedule is refused
    state = model.state_dict()
    assert state["iterative_pruning._extra_state"]["done"] == 1
    again = tiny_model(seed=2, embed_rank=16)
    again.iterative_pruning = IterativePruner(steps, "width")
    again.load_state_dict(state)
    assert again.iterative_pruning.done == 1 and again.iterative_pruning.log == pruner.log
    other = tiny_model(seed=2, embed_rank=16)
    other.iterative_pruning = IterativePruner(schedule("width", layer_shapes(other), 40, 0.5, heads=2), "width")
    with pytest.raises(ValueError, match="another schedule"):
        other.load_state_dict(state)
    # a model without a pruner (prediction) loads it too
    plain = tiny_model(seed=2, embed_rank=16)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(logits(plain, tok), logits(model.eval(), tok))


def pruning_cfg(**kw):
    from types import SimpleNamespace

    base = dict(iterative_pruning="width", prune_period=0.5, prune_total_updates=20, max_update=0,
                target_heads=2, target_ffn_dim=0, target_embed_rank=0, target_layers=0, fp16=False, bf16=False,
                amp=False, memory_efficient_fp16=False, distributed_world_size=1, ddp_backend="pytorch_ddp",
                store_ema=False)
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("kwargs, message", [
    (dict(fp16=True), "drop --fp16"),
    (dict(bf16=True), "drop --bf16"),
    (dict(amp=True), "drop --amp"),
    (dict(fp16=True, memory_efficient_fp16=True), "drop --fp16 --memory-efficient-fp16"),
    (dict(distributed_world_size=2), "one device"),
    (dict(ddp_backend="fully_sharded"), "FSDP"),
    (dict(store_ema=True), "--store-ema"),
])
def test_attach_pruner_refusals(kwargs, message):
    from user_dir.compress.iterative import attach_pruner

    with pytest.raises(ValueError, match=message):
        attach_pruner(tiny_model(), pruning_cfg(**kwargs))
    pruner = attach_pruner(tiny_model(), pruning_cfg())
    assert [s["update"] for s in pruner.steps] == [5, 10] and pruner.mode == "width"
    # the run's length defaults to --max-update
    assert [s["update"] for s in attach_pruner(tiny_model(), pruning_cfg(prune_total_updates=0, max_update=40)).steps] \
        == [10, 20]


def test_optimizer_check_and_schedule_consistency():
    from user_dir.compress.iterative import check_optimizer

    model = tiny_model()
    check_optimizer(torch.optim.Adam(model.parameters()))
    with pytest.raises(ValueError, match="Adagrad"):
        check_optimizer(torch.optim.Adagrad(model.parameters()))
    # a model that is not at the shape the schedule says is refused at the next step
    steps = schedule("width", layer_shapes(model), 20, 0.5, heads=2)
    pruner = IterativePruner(steps, "width")
    pruner.done = 1
    with pytest.raises(ValueError, match="not the schedule's"):
        pruner.after_update(model, None, 10)


def test_depth_pruning_refuses_a_layer_map_some_depth_cannot_take():
    """12 -> 6 layers under ROSITA's drop rule passes through 7 layers, which drop cannot map."""
    from types import SimpleNamespace

    from user_dir.criterions.layerwise_distillation import LayerwiseDistillationConfig, LayerwiseDistillationCriterion

    def task(target, student=12):
        teacher = SimpleNamespace(shape={"layers": 12, "dim": 16, "heads": [4] * 12})
        return SimpleNamespace(load_teacher=lambda: teacher, cfg=SimpleNamespace(iterative_pruning="depth",
                                                                                 target_layers=target),
                               student_shape={"layers": student, "dim": 16, "heads": [4] * student})

    with pytest.raises(ValueError, match="passes through 7 layers"):
        LayerwiseDistillationCriterion(LayerwiseDistillationConfig(layer_map="drop"), task(6))
    LayerwiseDistillationCriterion(LayerwiseDistillationConfig(layer_map="bottom"), task(6))
    LayerwiseDistillationCriterion(LayerwiseDistillationConfig(layer_map="drop"), task(8, student=12))  # 12..8 map
    with pytest.raises(ValueError, match="not a list"):
        LayerwiseDistillationCriterion(LayerwiseDistillationConfig(layer_map="0,1,2"), task(1, student=2))
