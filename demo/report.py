"""Teacher vs student on SST-2 dev: accuracy, size and raw-text-to-label speed.

Both models go from the same raw dev sentences to labels on this machine in
this run: the teacher through its WordPiece BPE and transformer, the student
through n-gram featurization and the DAN.  Writes WORK/report.json and
WORK/report.png (accuracy against throughput, log scale) and prints a table.

    python demo/report.py WORK DEV_TSV
"""

import json
import logging
import os
import sys
import time

import numpy as np
import torch

from user_dir.models.hub_interface import DANHubInterface
from user_dir.data.examples import read_examples
from user_dir.teacher import Teacher


def timed(fn, texts, min_seconds=2.0):
    """Sentences per second of ``fn(texts)``, repeated for at least ``min_seconds``."""
    fn(texts[:32])  # warm-up
    runs, start = 0, time.perf_counter()
    while True:
        out = fn(texts)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return out, runs * len(texts) / elapsed


def main(work, dev_tsv):
    texts, labels = read_examples(dev_tsv, "tsv", (0,), 1, header=True)
    teacher = Teacher(os.path.join(work, "teacher", "ckpt"))
    student = DANHubInterface.from_pretrained(os.path.join(work, "checkpoints"), "checkpoint_best.pt",
                                              os.path.join(work, "data-bin"))
    rows = {}
    for name, model, predict in (
        ("teacher (MiniLM-L6, fine-tuned)", teacher.model, teacher.predict),
        ("student (DAN)", student.model, student.predict),
    ):
        preds, speed = timed(predict, texts)
        rows[name] = {
            "accuracy": round(100.0 * np.mean([p == g for p, g in zip(preds, labels)]), 2),
            "parameters": sum(p.numel() for p in model.parameters()),
            "sentences_per_second": round(speed, 1),
        }
    (t_name, t), (s_name, s) = rows.items()
    report = {
        "task": "SST-2 dev (872 sentences), raw text in, labels out",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "models": rows,
        "student_accuracy_vs_teacher": round(s["accuracy"] / t["accuracy"], 4),
        "speedup": round(s["sentences_per_second"] / t["sentences_per_second"], 1),
        "goals": {"student_accuracy_vs_teacher": 0.95, "speedup": 100},
    }
    with open(os.path.join(work, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    plot(rows, os.path.join(work, "report.png"))
    print(f"{'model':<34}{'dev acc':>9}{'params':>13}{'sentences/s':>13}")
    for name, r in rows.items():
        print(f"{name:<34}{r['accuracy']:>9.2f}{r['parameters']:>13,}{r['sentences_per_second']:>13,.0f}")
    print(f"student/teacher accuracy: {report['student_accuracy_vs_teacher']:.3f} (goal >= 0.95); "
          f"speed-up: {report['speedup']:.0f}x (goal >= 100x)")
    print(f"report: {work}/report.json, {work}/report.png")


def plot(rows, path):
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in rows.items():
        ax.scatter(r["sentences_per_second"], r["accuracy"], s=60)
        ax.annotate(name, (r["sentences_per_second"], r["accuracy"]), textcoords="offset points",
                    xytext=(6, 6), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("sentences / second (raw text to label, this machine)")
    ax.set_ylabel("SST-2 dev accuracy (%)")
    ax.set_title("Sparse distillation on SST-2")
    ax.grid(True, which="both", alpha=0.3)
    xs = [r["sentences_per_second"] for r in rows.values()]
    ax.set_xlim(min(xs) / 3, max(xs) * 5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(*sys.argv[1:3])
