import copy

import pytest
import torch

from user_dir.optim.mixed_adam import FairseqMixedAdam, MixedAdamConfig, MixedAdam


class Tiny(torch.nn.Module):
    def __init__(self, rows=50, dim=4):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(rows, dim, sparse=True)
        self.emb.weight.param_group = "sparse"
        self.lin = torch.nn.Linear(dim, 2)

    def forward(self, ids):
        return self.lin(self.emb(ids).mean(1))


def loss_fn(model, ids):
    return model(ids).pow(2).sum()


def fairseq_opt(model, **kw):
    cfg = MixedAdamConfig(**{"lr": [0.01], "weight_decay": 0.1, **kw})
    return FairseqMixedAdam(cfg, list(model.parameters()))


def batches(n=6, rows=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, rows, (3, 5), generator=g) for _ in range(n)]


def test_routes_parameters_and_matches_torch_optimizers():
    model = Tiny()
    ref = copy.deepcopy(model)
    opt = fairseq_opt(model)
    assert [type(o).__name__ for _, o in opt.optimizer.parts] == ["AdamW", "SparseAdam"]
    dense = torch.optim.AdamW(ref.lin.parameters(), lr=0.01, weight_decay=0.1)
    sparse = torch.optim.SparseAdam([ref.emb.weight], lr=0.01)
    for ids in batches():
        opt.zero_grad()
        loss_fn(model, ids).backward()
        opt.step()
        dense.zero_grad(), sparse.zero_grad()
        loss_fn(ref, ids).backward()
        dense.step(), sparse.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.equal(a, b)


def test_lazy_rows_and_no_weight_decay_on_sparse():
    model = Tiny()
    before = model.emb.weight.detach().clone()
    opt = fairseq_opt(model)
    ids = torch.tensor([[1, 2, 3]])
    opt.zero_grad()
    loss_fn(model, ids).backward()
    opt.step()
    changed = (model.emb.weight != before).any(1).nonzero().flatten().tolist()
    assert changed == [1, 2, 3]


def test_scheduler_lr_reaches_both_parts():
    opt = fairseq_opt(Tiny())
    opt.set_lr(0.123)
    assert [g["lr"] for g in opt.optimizer.dense.param_groups + opt.optimizer.sparse.param_groups] == [0.123, 0.123]
    assert opt.get_lr() == 0.123


def test_state_round_trip_resumes_exactly():
    model = Tiny()
    opt = fairseq_opt(model)
    data = batches(8)
    for ids in data[:4]:
        opt.zero_grad(), loss_fn(model, ids).backward(), opt.step()
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    for ids in data[4:]:
        opt.zero_grad(), loss_fn(model, ids).backward(), opt.step()

    resumed = Tiny()
    resumed.load_state_dict(saved_model)
    opt2 = fairseq_opt(resumed, lr=[0.5])  # new run, other config: checkpoint state must win
    opt2.load_state_dict(saved_opt, optimizer_overrides={"lr": 0.01})
    for ids in data[4:]:
        opt2.zero_grad(), loss_fn(resumed, ids).backward(), opt2.step()
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="mixed_adam state has parts"):
        opt2.optimizer.load_state_dict({"dense": saved_opt["dense"]})


def test_clip_grad_norm_counts_sparse_gradients():
    model = Tiny()
    opt = fairseq_opt(model)
    ids = torch.tensor([[1, 1, 2]])  # row 1 twice: coalesced before the norm
    loss_fn(model, ids).backward()
    dense = torch.cat([p.grad.flatten() for p in model.lin.parameters()])
    sparse = model.emb.weight.grad.coalesce().to_dense()
    expected = torch.sqrt(dense.pow(2).sum() + sparse.pow(2).sum())
    norm = opt.clip_grad_norm(0.0)
    assert torch.allclose(norm, expected)
    opt.clip_grad_norm(expected.item() / 2)
    after = torch.sqrt(sum(p.grad.coalesce()._values().pow(2).sum() if p.grad.is_sparse else p.grad.pow(2).sum()
                           for p in model.parameters()))
    assert torch.allclose(after, expected / 2, rtol=1e-4)
    opt.multiply_grads(torch.tensor(2.0))
    assert model.emb.weight.grad.is_sparse


def test_plain_use_without_fairseq():
    model = Tiny()
    opt = MixedAdam(model.parameters(), lr=0.1)
    loss_fn(model, torch.tensor([[0, 1]])).backward()
    opt.step()
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
