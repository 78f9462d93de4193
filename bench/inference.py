"""Teacher, DAN student and fastText side by side on SST-2 dev: accuracy and sentences/s.

All three go from the same raw dev sentences to labels in this process:
the fine-tuned MiniLM teacher and the distilled DAN from a finished demo run
(``bash demo/run.sh``), and a fastText classifier trained here on gold SST-2
train (the usual fast baseline; bigrams, 10 epochs).

    .venv/bin/pip install fasttext-numpy2      # bench-only dependency
    .venv/bin/python bench/inference.py [--work demo/work/sst2]

Writes bench/results/inference.json and prints a table.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "demo"))

from report import timed  # noqa: E402  (demo/report.py: the same timing for the demo and here)

from user_dir.models.hub_interface import StudentHubInterface  # noqa: E402
from user_dir.data.examples import read_examples  # noqa: E402
from user_dir.teacher import Teacher  # noqa: E402


def fasttext_model(train_tsv, workdir):
    import fasttext

    texts, labels = read_examples(train_tsv, "tsv", (0,), 1, header=True)
    path = os.path.join(workdir, "train.ft")
    with open(path, "w", encoding="utf-8") as f:
        for t, y in zip(texts, labels):
            f.write(f"__label__{y} {t}\n")
    start = time.perf_counter()
    model = fasttext.train_supervised(input=path, epoch=10, wordNgrams=2, dim=100, lr=0.5, thread=2,
                                      verbose=0)
    return model, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.path.join(REPO, "demo", "work", "sst2"), help="a finished demo run")
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "glue", "SST-2"))
    p.add_argument("--output", default=os.path.join(HERE, "results", "inference.json"))
    args = p.parse_args()
    texts, labels = read_examples(os.path.join(args.data, "dev.tsv"), "tsv", (0,), 1, header=True)
    teacher = Teacher(os.path.join(args.work, "teacher", "ckpt"))
    student = StudentHubInterface.from_pretrained(os.path.join(args.work, "checkpoints"), "checkpoint_best.pt",
                                              os.path.join(args.work, "data-bin"))
    with tempfile.TemporaryDirectory() as tmp:
        ft, ft_train_s = fasttext_model(os.path.join(args.data, "train.tsv"), tmp)

    def ft_predict(batch):
        return [lab[0][len("__label__"):] for lab in ft.predict(list(batch))[0]]

    rows = {}
    for name, predict in (
        ("teacher: MiniLM-L6 fine-tuned", teacher.predict),
        ("student: DAN, sparse distillation", student.predict),
        ("fastText on gold labels", ft_predict),
    ):
        preds, speed = timed(predict, texts)
        rows[name] = {"accuracy": round(100.0 * np.mean([a == b for a, b in zip(preds, labels)]), 2),
                      "sentences_per_second": round(speed, 1)}
    names = list(rows)
    student_vs_ft = rows[names[1]]["sentences_per_second"] / rows[names[2]]["sentences_per_second"]
    report = {"bench": "raw text to label on SST-2 dev", "sentences": len(texts),
              "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
              "fasttext_train_seconds": round(ft_train_s, 1), "results": rows,
              "student_speed_vs_fasttext": round(student_vs_ft, 3),
              "student_accuracy_minus_fasttext": round(rows[names[1]]["accuracy"] - rows[names[2]]["accuracy"], 2),
              "goals": {"student_speed_vs_fasttext": ">= 0.5", "accuracy": "student clearly above fastText"}}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
    print(f"{'model':<36}{'dev acc':>9}{'sentences/s':>14}")
    for name, r in rows.items():
        print(f"{name:<36}{r['accuracy']:>9.2f}{r['sentences_per_second']:>14,.0f}")
    print(f"student speed / fastText: {student_vs_ft:.2f} (goal >= 0.5); accuracy difference: "
          f"{report['student_accuracy_minus_fasttext']:+.2f} points -> {args.output}")


if __name__ == "__main__":
    main()
