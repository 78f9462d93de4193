import numpy as np
import torch
from fairseq.data import ListDataset

from user_dir.data.feature_dropout_dataset import FeatureDropoutDataset


def dataset(n=50, length=200):
    items = [torch.arange(4, 4 + length) + i for i in range(n)]
    return ListDataset(items, sizes=np.array([len(x) for x in items]))


def is_subsequence(small, big):
    it = iter(big.tolist())
    return all(x in it for x in small.tolist())


def test_rate_order_and_truncation():
    ds = FeatureDropoutDataset(dataset(), p=0.3, max_positions=10_000, seed=1)
    kept = [len(ds[i]) for i in range(len(ds))]
    rate = 1 - sum(kept) / (200 * 50)
    assert abs(rate - 0.3) < 0.03  # 10,000 draws: 4+ standard deviations
    assert all(is_subsequence(ds[i], ds.dataset[i]) for i in range(len(ds)))
    short = FeatureDropoutDataset(dataset(), p=0.3, max_positions=7, seed=1)
    assert torch.equal(short[3], ds[3][:7])
    assert short.sizes.max() == 7


def test_reproducible_per_seed_epoch_index():
    a = FeatureDropoutDataset(dataset(), p=0.5, max_positions=1000, seed=3)
    b = FeatureDropoutDataset(dataset(), p=0.5, max_positions=1000, seed=3)
    assert all(torch.equal(a[i], b[i]) for i in range(10))
    # order of access does not matter
    assert torch.equal(a[9], b[9]) and torch.equal(a[0], b[0])
    first = [a[i] for i in range(10)]
    a.set_epoch(2)
    assert any(not torch.equal(first[i], a[i]) for i in range(10))
    b.set_epoch(2)
    assert all(torch.equal(a[i], b[i]) for i in range(10))
    c = FeatureDropoutDataset(dataset(), p=0.5, max_positions=1000, seed=4)
    assert any(not torch.equal(first[i], c[i]) for i in range(10))
    assert not a.can_reuse_epoch_itr_across_epochs  # loader workers must see set_epoch


def test_no_dropout_is_truncation_only():
    ds = FeatureDropoutDataset(dataset(), p=0.0, max_positions=5, seed=1)
    assert torch.equal(ds[2], ds.dataset[2][:5])
