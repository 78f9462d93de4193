"""Step time of the DAN under mixed_adam: 10k vs 1M features, and dense Adam at 1M.

A step is forward + backward + optimizer step on a batch of bags of feature
ids drawn from a Zipf law (as n-gram frequencies are).  With sparse Adam the
step should barely depend on the vocabulary size; dense Adam touches the whole
table every step.

    .venv/bin/python bench/mixed_adam_bench.py [--dim 256] [--batch 256] [--steps 50]

Writes bench/results/mixed_adam_bench.json and prints a table.
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
from fairseq.data import Dictionary

from user_dir.models.dan import FeatureBasedLinearModel, FeatureBasedLinearModelConfig
from user_dir.optim.mixed_adam import FairseqMixedAdam, MixedAdamConfig

HERE = os.path.dirname(os.path.abspath(__file__))


class _Dict(Dictionary):
    """A dictionary of a given size without building a million symbols one by one."""

    def __init__(self, size):
        super().__init__()
        self.symbols += [f"f{i}" for i in range(size)]
        self.count += [1] * size


def build(vocab, dim, sparse):
    cfg = FeatureBasedLinearModelConfig()
    cfg.encoder_embed_dim, cfg.hidden_dim, cfg.max_positions = dim, dim, 512
    cfg.optimizer_name = "mixed_adam" if sparse else "adam"
    task = type("T", (), {"source_dictionary": _Dict(vocab), "input_keys": ("input0",)})()
    model = FeatureBasedLinearModel.build_model(cfg, task)
    model.register_classification_head("h", num_classes=2)
    return model


def batches(vocab, batch, length, steps, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.minimum(rng.zipf(1.3, size=(steps, batch, length)), vocab) + 3  # past the specials
    return torch.from_numpy(ids.astype(np.int64))


def time_steps(model, data, step_fn):
    target = torch.zeros(data.shape[1], dtype=torch.long)
    times = []
    for i, ids in enumerate(data):
        start = time.perf_counter()
        logits, _ = model(ids, classification_head_name="h")
        loss = torch.nn.functional.cross_entropy(logits, target)
        step_fn(loss)
        if i >= 5:  # warm-up excluded
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def run_case(name, vocab, dim, batch, length, steps):
    torch.manual_seed(0)
    sparse = name != "dense adam"
    model = build(vocab, dim, sparse)
    if sparse:
        opt = FairseqMixedAdam(MixedAdamConfig(lr=[1e-3]), list(model.parameters()))
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(loss):
        opt.zero_grad()
        loss.backward()
        opt.step()

    ms = time_steps(model, batches(vocab, batch, length, steps), step)
    return {"case": name, "vocab": vocab, "step_ms": round(ms, 2)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--length", type=int, default=32, help="features per example")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--output", default=os.path.join(HERE, "results", "mixed_adam_bench.json"))
    args = p.parse_args()
    cases = [("mixed_adam", 10_000), ("mixed_adam", 1_000_000), ("dense adam", 1_000_000)]
    rows = [run_case(name, v, args.dim, args.batch, args.length, args.steps) for name, v in cases]
    ratio_vocab = rows[1]["step_ms"] / rows[0]["step_ms"]
    ratio_dense = rows[2]["step_ms"] / rows[1]["step_ms"]
    report = {"bench": "mixed_adam step time", "dim": args.dim, "batch": args.batch, "length": args.length,
              "steps": args.steps, "threads": torch.get_num_threads(),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
              "results": rows, "ratio_1m_vs_10k": round(ratio_vocab, 3), "goal_ratio_1m_vs_10k": 1.5,
              "dense_over_sparse_at_1m": round(ratio_dense, 2)}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
    print(f"{'optimizer':<12}{'features':>12}{'step ms':>10}")
    for r in rows:
        print(f"{r['case']:<12}{r['vocab']:>12,}{r['step_ms']:>10.2f}")
    print(f"1M / 10k: {ratio_vocab:.2f}x (goal <= 1.5x); dense Adam / mixed_adam at 1M: {ratio_dense:.1f}x "
          f"-> {args.output}")


if __name__ == "__main__":
    main()
