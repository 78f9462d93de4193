"""Teacher, DAN student and fastText side by side on SST-2 dev: accuracy and sentences/s.

All three go from the same raw dev sentences to labels in this process:
the fine-tuned MiniLM teacher and the distilled DAN from a finished demo run
(``bash demo/run.sh``), and a fastText classifier trained here on gold SST-2
train (the usual fast baseline; bigrams, 10 epochs).

    .venv/bin/python bench/inference.py [--work demo/work/sst2]

Writes bench/results/inference.json and prints a table.  Speeds are medians
over ``--rounds`` rounds in which the three models take turns.
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from user_dir.inference.hub_interface import StudentHubInterface
from user_dir.inference.teacher import Teacher
from user_dir.inference.timing import accuracy, machine, timed  # the demo report's timing too
from user_dir.preprocess.examples import read_examples

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


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
    p.add_argument("--rounds", type=int, default=5, help="timing rounds, the models interleaved")
    p.add_argument("--seconds", type=float, default=1.0, help="least time per model and round")
    p.add_argument("--device", default="cpu", help="teacher and student: cpu (default, as fastText), auto, cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="torch's threads (default: torch's own); the DAN's featurizer uses a thread per core")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    texts, labels = read_examples(os.path.join(args.data, "dev.tsv"), "tsv", (0,), 1, header=True)
    teacher = Teacher(os.path.join(args.work, "teacher", "ckpt"), device=args.device)
    def student(table_dtype=None):
        return StudentHubInterface.from_pretrained(os.path.join(args.work, "checkpoints"), "checkpoint_best.pt",
                                                   os.path.join(args.work, "data-bin"), device=args.device,
                                                   table_dtype=table_dtype)

    dan, dan_half = student(), student("float16")
    with tempfile.TemporaryDirectory() as tmp:
        ft, ft_train_s = fasttext_model(os.path.join(args.data, "train.tsv"), tmp)

    def ft_predict(batch):
        return [lab[0][len("__label__"):] for lab in ft.predict(list(batch))[0]]

    models = (
        ("teacher: MiniLM-L6 fine-tuned", teacher.predict, teacher.device),
        ("student: DAN, sparse distillation", dan.predict, str(dan.device)),
        ("the same, float16 n-gram table", dan_half.predict, str(dan_half.device)),
        ("fastText on gold labels", ft_predict, "cpu"),
    )
    # rounds interleave the models, so a slow spell of a shared machine hits
    # all of them; speeds are medians, the ratio the median of per-round ratios
    speeds = {name: [] for name, _, _ in models}
    rows = {}
    for _ in range(args.rounds):
        for name, predict, device in models:
            preds, speed = timed(predict, texts, min_seconds=args.seconds)
            speeds[name].append(speed)
            rows[name] = {"accuracy": accuracy(preds, labels), "device": device}
    for name in rows:
        rows[name]["sentences_per_second"] = round(float(np.median(speeds[name])), 1)
        rows[name]["sentences_per_second_rounds"] = [round(x, 1) for x in speeds[name]]
    names = list(rows)
    ratios = np.array(speeds[names[1]]) / np.array(speeds[names[3]])
    student_vs_ft = float(np.median(ratios))
    half_ratios = np.array(speeds[names[2]]) / np.array(speeds[names[3]])
    report = {"bench": "raw text to label on SST-2 dev", "sentences": len(texts),
              "machine": machine(r["device"] for r in rows.values()),
              "rounds": args.rounds, "fasttext_train_seconds": round(ft_train_s, 1), "results": rows,
              "student_speed_vs_fasttext": round(student_vs_ft, 3),
              "student_speed_vs_fasttext_rounds": [round(float(x), 3) for x in ratios],
              "student_float16_speed_vs_fasttext": round(float(np.median(half_ratios)), 3),
              "student_float16_speed_vs_fasttext_rounds": [round(float(x), 3) for x in half_ratios],
              "student_accuracy_minus_fasttext": round(rows[names[1]]["accuracy"] - rows[names[3]]["accuracy"], 2),
              "float16_predictions_changed": int(sum(a != b for a, b in zip(dan.predict(texts),
                                                                            dan_half.predict(texts)))),
              # fastText's predict runs in one thread
              "threads": {"torch": torch.get_num_threads(), "dan_featurizer": dan.task.featurizer.batch_featurizer.threads,
                          "fasttext": 1},
              "goals": {"student_speed_vs_fasttext": ">= 2 (issue 16)", "accuracy": "student clearly above fastText"}}
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp_out = args.output + ".tmp"
    with open(tmp_out, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp_out, args.output)
    print(f"{'model':<36}{'dev acc':>9}{'device':>9}{'sentences/s':>14}")
    for name, r in rows.items():
        print(f"{name:<36}{r['accuracy']:>9.2f}{r['device']:>9}{r['sentences_per_second']:>14,.0f}")
    print(f"float16 table: {report['student_float16_speed_vs_fasttext']:.2f} x fastText, "
          f"{report['float16_predictions_changed']} predictions changed")
    print(f"student speed / fastText: {student_vs_ft:.2f}, median of {args.rounds} rounds "
          f"({ratios.min():.2f}-{ratios.max():.2f}; goal >= 2); accuracy difference: "
          f"{report['student_accuracy_minus_fasttext']:+.2f} points -> {args.output}")


if __name__ == "__main__":
    main()
