"""Dev accuracy of DAN students against transfer-set size: OUTPUT.json and OUTPUT.png.

Each point is ``N:CKPT_DIR:DATA_BIN`` (N corpus sentences added to the
task's ``--base-rows`` training rows; one point per seed, same N repeated).
Every student goes from the raw dev texts to labels (its own featurization),
as in demo/report.py; the teacher's dev accuracy is the reference line.
With ``--reference CKPT_DIR:DATA_BIN`` (the DAN of the task's own training
rows, e.g. the main demo's) every run's raw-text-to-label speed is timed in
rounds that alternate it with the reference's, on the same dev texts in this
process, so the curve says what the corpus costs in throughput.

    python demo/curve.py --dev SST-2/dev.tsv --teacher WORK/teacher/ckpt --base-rows 67349 \\
        --output WORK/corpus/curve --reference WORK/checkpoints:WORK/data-bin 0:WORK/corpus/dan-0-seed1:WORK/corpus/bin-0 ...
"""

import argparse
import json
import logging
import os
from collections import defaultdict

import numpy as np

from user_dir.fileio import atomic_output
from user_dir.inference.hub_interface import StudentHubInterface
from user_dir.inference.teacher import Teacher
from user_dir.inference.timing import accuracy, timed
from user_dir.preprocess.examples import read_examples


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dev", required=True, help="dev TSV with a header line (text, label)")
    p.add_argument("--teacher", required=True, help="the teacher's checkpoint directory")
    p.add_argument("--base-rows", type=int, required=True, help="the task's own training rows")
    p.add_argument("--output", required=True)
    p.add_argument("--reference", metavar="CKPT_DIR:DATA_BIN", type=lambda v: _fields(v, 2, "--reference"),
                   help="a DAN to time every run against (the task's own rows alone, e.g. the main demo's)")
    p.add_argument("--speed-rounds", type=int, default=3, help="timing rounds per run, alternating with the reference")
    p.add_argument("--seconds", type=float, default=1.0, help="least time per model and round")
    p.add_argument("points", nargs="+", metavar="N:CKPT_DIR:DATA_BIN", type=lambda v: _fields(v, 3, "a point"))
    args = p.parse_args(argv)
    texts, labels = read_examples(args.dev, "tsv", [0], 1, header=True)
    teacher_acc = accuracy(Teacher(args.teacher).predict(texts), labels)
    reference = None
    if args.reference:
        ckpt_dir, data_bin = args.reference
        reference = StudentHubInterface.from_pretrained(ckpt_dir, "checkpoint_best.pt", data_bin, device="cpu")
    by_size = defaultdict(list)
    for spec in args.points:
        n, ckpt_dir, data_bin = spec
        student = StudentHubInterface.from_pretrained(ckpt_dir, "checkpoint_best.pt", data_bin, device="cpu")
        run = {"checkpoint": ckpt_dir, "accuracy": accuracy(student.predict(texts), labels)}
        if reference is not None:
            run.update(speed_against(student, reference, texts, args.speed_rounds, args.seconds))
        by_size[int(n)].append(run)
    points = []
    for n in sorted(by_size):
        accs = [r["accuracy"] for r in by_size[n]]
        mean = float(np.mean(accs))
        points.append({"corpus_sentences": n, "transfer_rows": args.base_rows + n, "runs": by_size[n],
                       "mean_accuracy": round(mean, 2), "std": round(float(np.std(accs)), 2),
                       "mean_vs_teacher": round(mean / teacher_acc, 4)})
    report = {"dev": os.path.abspath(args.dev), "dev_examples": len(texts), "teacher_accuracy": teacher_acc,
              "points": points}
    if reference is not None:
        report["reference"] = {"checkpoint": args.reference[0],
                               "accuracy": accuracy(reference.predict(texts), labels)}
    with atomic_output(args.output + ".json", "w") as f:
        json.dump(report, f, indent=2)
    plot(report, args.output + ".png")
    for pt in points:
        print(f"{pt['transfer_rows']:>10,} rows: dev accuracy {pt['mean_accuracy']:.2f} "
              f"(+- {pt['std']:.2f}, {len(pt['runs'])} run(s)), {100 * pt['mean_vs_teacher']:.1f}% of the teacher's "
              f"{teacher_acc:.2f}" + (f", speed x{np.median([r['speed_vs_reference'] for r in pt['runs']]):.2f} "
                                      "of the reference" if reference is not None else ""))
    return report


def _fields(value, count, what):
    """``A:B[:C]`` split into ``count`` fields (the last may hold colons), or argparse's error."""
    fields = value.split(":", count - 1)
    if len(fields) != count or not all(fields) or (count == 3 and not fields[0].isdigit()):
        form = "N:CKPT_DIR:DATA_BIN" if count == 3 else "CKPT_DIR:DATA_BIN"
        raise argparse.ArgumentTypeError(f"{what} is {form}, not {value!r}")
    return fields


def speed_against(student, reference, texts, rounds, seconds):
    """Sentences/s of ``student`` and its ratio to ``reference``'s: rounds alternate the two, so a
    slow spell of a shared machine hits both; the ratio is the median of the rounds' ratios."""
    own, ratios = [], []
    for _ in range(rounds):
        _, ref_speed = timed(reference.predict, texts, min_seconds=seconds)
        _, speed = timed(student.predict, texts, min_seconds=seconds)
        own.append(speed)
        ratios.append(speed / ref_speed)
    return {"sentences_per_second": round(float(np.median(own)), 1),
            "speed_vs_reference": round(float(np.median(ratios)), 3),
            "speed_vs_reference_rounds": [round(r, 3) for r in ratios]}


def plot(report, path):
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = report["points"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    xs = [p["transfer_rows"] for p in pts]
    ax.errorbar(xs, [p["mean_accuracy"] for p in pts], yerr=[p["std"] for p in pts], marker="o", capsize=3,
                label="DAN (KD), mean of the runs")
    for p in pts:
        ax.scatter([p["transfer_rows"]] * len(p["runs"]), [r["accuracy"] for r in p["runs"]], s=10, color="gray")
    t = report["teacher_accuracy"]
    ax.axhline(t, linestyle="--", color="black", label=f"teacher {t:.2f}")
    ax.axhline(0.97 * t, linestyle=":", color="gray", label="97% of the teacher")
    ax.set_xscale("log")
    ax.set_xlabel("transfer-set rows (SST-2 phrases + corpus sentences)")
    ax.set_ylabel("dev accuracy (%)")
    ax.set_title("Sparse distillation on SST-2: transfer-set size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path + ".part.png", dpi=120)
    os.replace(path + ".part.png", path)


if __name__ == "__main__":
    main()
