"""The teacher and pruned shapes of it: raw-text-to-label throughput, and the cost of a KD step.

Throughput: SST-2 dev sentences from raw text to labels (WordPiece, the
transformer, argmax) with 1, 32 and 256 texts a batch, for the fine-tuned
teacher of ``demo/sst2.sh`` and pruned copies of it (``distill-prune``'s
``prune``; which heads and neurons go does not change the speed, so the
scores here are the weights' norms).  On CPU, and on the GPU when one is
there (``--device cuda``).

Training step: one fairseq update (forward, backward, Adam) of the pruned
target shape on 32 sentences, bare (gold-label cross-entropy) against
``layerwise_distillation`` with the teacher online (its forward pass,
hidden states and the hidden-state MSE added).

    .venv/bin/python bench/pruned_transformers.py [--work demo/work/sst2] [--device cpu]

Writes bench/results/pruned_transformers[-DEVICE].json and prints tables.
"""

import argparse
import copy
import json
import os
import time

import numpy as np
import torch

from user_dir.compress.prune import prune
from user_dir.inference.teacher import Teacher
from user_dir.inference.timing import machine, parameter_counts
from user_dir.preprocess.examples import read_examples

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HEAD = "sentence_classification_head"
# name: (layers kept, heads per layer, FFN width, embedding rank)
SHAPES = {
    "teacher l6 a12 f1536": None,
    "l4 a12 f1536": (4, None, None, None),
    "l6 a4 f512": (6, 4, 512, None),
    "l4 a4 f512 e128 (target)": (4, 4, 512, 128),
    "l2 a2 f256 e64": (2, 2, 256, 64),
}


def norm_scores(model):
    """Importance stand-in: weight norms (pruning speed does not depend on which units go)."""
    heads, ffn = [], []
    for layer in model.encoder.sentence_encoder.layers:
        a = layer.self_attn
        heads.append(a.out_proj.weight.abs().sum(0).view(a.num_heads, -1).sum(-1).tolist())
        ffn.append(layer.fc1.weight.abs().sum(1).tolist())
    return {"heads": heads, "ffn": ffn}


def shaped(model, shape):
    if shape is None:
        return model
    layers, heads, ffn, rank = shape
    m = copy.deepcopy(model)
    prune(m, layers=list(range(layers)), keep_heads_per_layer=heads, ffn_dim=ffn, embed_rank=rank,
          importance=norm_scores(m))
    return m.eval()


def throughput(teacher, model, texts, batch, seconds, device):
    """Sentences per second from raw text to labels, ``batch`` texts a call."""
    from fairseq.data import data_utils

    pad = teacher.task.source_dictionary.pad()

    @torch.inference_mode()
    def label(chunk):
        ids = teacher.encode_all(chunk)[0]
        tokens = data_utils.collate_tokens(ids, pad).to(device)
        return model(tokens, features_only=True, classification_head_name=HEAD)[0].argmax(-1).tolist()

    chunks = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    label(chunks[0])  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        for c in chunks:
            label(c)
            done += len(c)
            if time.perf_counter() - start >= seconds and done >= 256:
                return done / (time.perf_counter() - start)


def step_cost(work, student, device, steps):
    """Seconds per update: bare (CE) and with the online teacher (layerwise_distillation)."""
    from omegaconf import OmegaConf

    from user_dir.criterions.distillation_losses import cross_entropy
    from user_dir.criterions.layerwise_distillation import (LayerwiseDistillationConfig,
                                                            LayerwiseDistillationCriterion)
    from user_dir.models.transformer_outputs import classifier_outputs, transformer_shape
    from user_dir.tasks.glue_distillation import glue_task

    teacher_ckpt = os.path.join(work, "teacher", "ckpt", "checkpoint_best.pt")
    task = glue_task(os.path.join(work, "teacher", "data-bin"), 2, init_token=0, teacher_checkpoint=teacher_ckpt)
    task.load_teacher()
    task.student_shape = transformer_shape(student)
    ds = task.load_dataset("train")
    batches = [ds.collater([ds[i] for i in range(s * 32, (s + 1) * 32)]) for s in range(steps + 1)]
    batches = [{k: (v.to(device) if torch.is_tensor(v) else {a: b.to(device) for a, b in v.items()}
                    if isinstance(v, dict) else v) for k, v in b.items()} for b in batches]
    kd = LayerwiseDistillationCriterion(OmegaConf.structured(LayerwiseDistillationConfig), task)

    def bare(model, b):  # gold labels only, no teacher
        logits = classifier_outputs(model, b["net_input"]["src_tokens"], HEAD).logits
        return cross_entropy(logits, b["target"]).sum

    losses = {"bare student (CE)": bare, "online teacher (layerwise KD)": lambda m, b: kd(m, b)[0]}
    out = {}
    for name, loss_fn in losses.items():
        model = copy.deepcopy(student).to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-5)
        times = []
        for i, b in enumerate(batches):
            start = time.perf_counter()
            loss_fn(model, b).backward()
            opt.step()
            opt.zero_grad()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:  # the first is a warm-up
                times.append(time.perf_counter() - start)
        out[name] = round(float(np.median(times)), 4)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.path.join(REPO, "demo", "work", "sst2"), help="a finished demo/sst2.sh")
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "glue", "SST-2"))
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seconds", type=float, default=2.0, help="least time per measurement")
    p.add_argument("--steps", type=int, default=10, help="timed training steps per row")
    p.add_argument("--output", default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    output = args.output or os.path.join(HERE, "results", f"pruned_transformers-{device.type}.json")
    texts, _ = read_examples(os.path.join(args.data, "dev.tsv"), "tsv", (0,), 1, header=True)
    teacher = Teacher(os.path.join(args.work, "teacher", "ckpt"), device="cpu")
    rows = {}
    for name, shape in SHAPES.items():
        model = shaped(teacher.model, shape).to(device)
        row = parameter_counts(model)
        for batch in (1, 32, 256):
            row[f"sentences_per_second_batch_{batch}"] = round(throughput(teacher, model, texts, batch,
                                                                          args.seconds, device), 1)
        rows[name] = row
        print(name, json.dumps(row), flush=True)
    target = shaped(teacher.model, SHAPES["l4 a4 f512 e128 (target)"])
    steps = step_cost(args.work, target, device, args.steps)
    steps["online teacher / bare"] = round(steps["online teacher (layerwise KD)"] / steps["bare student (CE)"], 2)
    result = {"machine": machine([device]), "device": str(device), "texts": len(texts), "throughput": rows,
              "train_step_seconds_batch_32": steps}
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as f:
        json.dump(result, f, indent=2)
    t = rows["teacher l6 a12 f1536"]
    print(f"\n{'shape':<28}{'params':>12}{'w/o emb':>11}" + "".join(f"{f'batch {b}':>11}" for b in (1, 32, 256))
          + f"{'x teacher @32':>15}")
    for name, r in rows.items():
        print(f"{name:<28}{r['parameters']:>12,}{r['parameters_without_embedding']:>11,}"
              + "".join(f"{r[f'sentences_per_second_batch_{b}']:>11,.0f}" for b in (1, 32, 256))
              + f"{r['sentences_per_second_batch_32'] / t['sentences_per_second_batch_32']:>14.1f}x")
    print(f"\ntraining step, 32 sentences ({device}): " + ", ".join(f"{k} {v}" for k, v in steps.items()))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
