"""Teacher vs students on a dev set: accuracy (F1 for two classes), size, raw-text-to-label speed.

Every model goes from the same raw dev texts to labels on this machine in
this run: the teacher through its WordPiece BPE and transformer, each
student through its own featurization (n-grams or BPE) and network.  Writes
OUTPUT.json and OUTPUT.png (accuracy against throughput, log scale) and
prints a table.  Each row records the device it ran on (the teacher: CUDA
when available, --teacher-device; students: CPU, --student-device), and the
table says when a speed-up compares devices.

    python demo/report.py --dev SST-2/dev.tsv --teacher WORK/teacher/ckpt \\
        --student "DAN=WORK/checkpoints:WORK/data-bin" --output WORK/report
    # pairs: --text-column 3 4 --label-column 0
    # the gold-label baselines too (fastText, TF-IDF LR), tuned on VALID:
    #   --baselines --train TRAIN.tsv --valid VALID.tsv
    # other sentence_prediction models, read as the teacher is: --transformer "NAME=CKPT_DIR"
"""

import argparse
import json
import logging
import os

from user_dir.preprocess.examples import read_examples
from user_dir.inference.baselines import FastText, TfidfLogReg
from user_dir.inference.hub_interface import StudentHubInterface
from user_dir.inference.predict import binary_f1, binary_mcc
from user_dir.inference.teacher import Teacher
from user_dir.inference.timing import accuracy, machine, parameter_counts, timed


def measure(counts, predict, texts, labels, classes, device):
    preds, speed = timed(predict, texts)
    row = {
        "accuracy": accuracy(preds, labels),
        **counts,
        "sentences_per_second": round(speed, 1),
        "device": str(device),
    }
    if len(classes) == 2:
        row["f1"] = round(binary_f1(preds, labels, classes[1]), 2)
        row["mcc"] = round(binary_mcc(preds, labels, classes[1]), 2)
    return row


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dev", required=True, help="dev TSV with a header line")
    p.add_argument("--text-column", type=int, nargs="+", default=[0])
    p.add_argument("--label-column", type=int, default=1)
    p.add_argument("--teacher", required=True, help="the teacher's checkpoint directory")
    p.add_argument("--student", action="append", default=[], metavar="NAME=CKPT_DIR:DATA_BIN",
                   help="a student (checkpoint_best.pt of CKPT_DIR); repeatable")
    p.add_argument("--transformer", action="append", default=[], metavar="NAME=CKPT_DIR",
                   help="another model fine-tuned with fairseq's sentence_prediction (as the teacher), "
                        "measured as the teacher is, on the student device")
    p.add_argument("--output", required=True, help="OUTPUT.json and OUTPUT.png are written")
    p.add_argument("--title", default="Distillation on SST-2")
    p.add_argument("--mcc", action="store_true", help="show Matthews correlation (x100, CoLA's metric) in the "
                                                      "table (the JSON has it for every two-class task)")
    p.add_argument("--teacher-max-positions", type=int, metavar="P",
                   help="the teacher's window when shorter than its checkpoint's (distill-teacher-logits)")
    p.add_argument("--teacher-keep-head", type=int, metavar="H",
                   help="the teacher reads the first H tokens and the tail of long texts (distill-teacher-logits)")
    p.add_argument("--baselines", action="store_true",
                   help="add fastText (bigrams) and TF-IDF 1-2-gram logistic regression trained on --train's "
                        "gold labels, tuned on --valid (TSVs with a header, --text-column / --label-column)")
    p.add_argument("--train", help="--baselines: training TSV")
    p.add_argument("--valid", help="--baselines: validation TSV (hyper-parameters)")
    p.add_argument("--task-name", help="the data's name in the report (default: --dev's directory name)")
    p.add_argument("--split-name", default="dev", help="what --dev is, for the report's title (default: dev)")
    p.add_argument("--teacher-device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--student-device", default="cpu", help="cpu (default), auto, cuda, cuda:N")
    return p


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.baselines and not (args.train and args.valid):
        parser.error("--baselines needs --train and --valid")
    read = lambda path: read_examples(path, "tsv", args.text_column, args.label_column, header=True)  # noqa: E731
    texts, labels = read(args.dev)
    teacher = Teacher(args.teacher, device=args.teacher_device, max_positions=args.teacher_max_positions,
                      keep_head=args.teacher_keep_head)
    rows = {"teacher": measure(parameter_counts(teacher.model), teacher.predict, texts, labels, teacher.classes, teacher.device)}
    if args.teacher_keep_head is not None or args.teacher_max_positions is not None:
        rows["teacher"]["window"] = {"positions": teacher.max_positions, "keep_head": teacher.keep_head}
    for spec in args.student:
        name, paths = spec.split("=", 1)
        ckpt_dir, data_bin = paths.split(":", 1)
        student = StudentHubInterface.from_pretrained(ckpt_dir, "checkpoint_best.pt", data_bin,
                                                      device=args.student_device)
        counts = {"parameters": student.num_parameters, **{k: v for k, v in parameter_counts(student.model).items()
                                                          if k != "parameters"}}
        rows[name] = measure(counts, student.predict, texts, labels, student.classes, student.device)
    for spec in args.transformer:
        name, ckpt_dir = spec.split("=", 1)
        model = Teacher(ckpt_dir, device=args.student_device)
        rows[name] = measure(parameter_counts(model.model), model.predict, texts, labels, model.classes, model.device)
    if args.baselines:
        train, valid = read(args.train), read(args.valid)
        if len(args.text_column) != 1:
            raise ValueError("--baselines reads single texts (one --text-column), not pairs")
        for baseline in (FastText(), TfidfLogReg()):
            baseline.fit(*train, *valid)
            row = measure({"parameters": baseline.num_parameters}, baseline.predict, texts, labels,
                          teacher.classes, "cpu")
            row["settings"] = baseline.settings
            row["trained_on"] = f"{len(train[0])} gold-labelled examples of {args.train}"
            rows[baseline.name] = row
    t = rows["teacher"]
    for name, row in rows.items():
        if name != "teacher":
            row["accuracy_vs_teacher"] = round(row["accuracy"] / t["accuracy"], 4)
            row["points_below_teacher"] = round(t["accuracy"] - row["accuracy"], 2)
            row["speedup"] = round(row["sentences_per_second"] / t["sentences_per_second"], 1)
    report = {
        "task": f"{args.task_name or os.path.basename(os.path.dirname(os.path.abspath(args.dev)))} {args.split_name} "
                f"({len(texts)} examples), raw text in, labels out",
        "machine": machine(r["device"] for r in rows.values()),
        "models": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output + ".json", "w") as f:
        json.dump(report, f, indent=2)
    plot(rows, args.output + ".png", args.title, args.split_name)
    f1 = "f1" in rows["teacher"]
    mcc = args.mcc and "mcc" in rows["teacher"]
    no_emb = any("parameters_without_embedding" in r for r in rows.values())
    print(f"{'model':<28}{args.split_name[:4] + ' acc':>9}" + (f"{'F1':>7}" if f1 else "") + (f"{'MCC':>7}" if mcc else "")
          + f"{'params':>13}"
          + (f"{'w/o emb':>12}" if no_emb else "") + f"{'device':>9}{'sentences/s':>13}{'acc/teacher':>13}{'speed-up':>10}")
    for name, r in rows.items():
        print(f"{name:<28}{r['accuracy']:>9.2f}" + (f"{r['f1']:>7.2f}" if f1 else "")
              + (f"{r['mcc']:>7.2f}" if mcc else "") + f"{r['parameters']:>13,}"
              + ((f"{r['parameters_without_embedding']:>12,}" if "parameters_without_embedding" in r
                  else f"{'-':>12}") if no_emb else "")
              + f"{r['device']:>9}{r['sentences_per_second']:>13,.0f}"
              + (f"{r['accuracy_vs_teacher']:>13.3f}{r['speedup']:>9.0f}x" if name != "teacher" else ""))
    devices = sorted({r["device"] for r in rows.values()})
    if len(devices) > 1:
        print(f"note: the models ran on different devices ({', '.join(devices)}): speed-ups compare devices too")
    print(f"report: {args.output}.json, {args.output}.png")
    return report


def plot(rows, path, title, split="dev"):
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    several = len({r["device"] for r in rows.values()}) > 1
    for name, r in rows.items():
        ax.scatter(r["sentences_per_second"], r["accuracy"], s=60)
        label = f"{name} ({r['device']})" if several else name
        ax.annotate(label, (r["sentences_per_second"], r["accuracy"]), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("sentences / second (raw text to label, this machine)")
    ax.set_ylabel(f"{split} accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    xs = [r["sentences_per_second"] for r in rows.values()]
    ax.set_xlim(min(xs) / 3, max(xs) * 8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
