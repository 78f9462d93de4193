"""A stand-in teacher: tf-idf logistic regression on the gold training labels.

It exists so that the sparse-distillation pipeline runs end to end before the
fine-tuned transformer teacher is wired in; it writes the same files a real
teacher's distill-teacher-logits step does (logits .npy + class-order .json).

    python demo/stand_in_teacher.py --train-text T --train-labels L \
        --input A.txt B.txt --output A.npy B.npy [--eval-text D --eval-labels DL]
"""

import argparse
import json
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from user_dir.data.teacher_targets import save_teacher_targets
from user_dir.data.text_io import read_lines


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-text", required=True)
    p.add_argument("--train-labels", required=True)
    p.add_argument("--input", nargs="+", required=True, help="texts to label (one example per line)")
    p.add_argument("--output", nargs="+", required=True, help="one .npy per input")
    p.add_argument("--eval-text")
    p.add_argument("--eval-labels")
    p.add_argument("--report", help="JSON file for accuracy and speed")
    args = p.parse_args()
    if len(args.input) != len(args.output):
        p.error("--input and --output need the same number of files")
    texts, labels = read_lines(args.train_text), read_lines(args.train_labels)
    classes = sorted(set(labels))
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    clf = LogisticRegression(C=10, max_iter=3000).fit(vec.fit_transform(texts), labels)
    assert list(clf.classes_) == classes

    def logits(lines):
        scores = clf.decision_function(vec.transform(lines))
        if scores.ndim == 1:  # binary: one score for the second class
            scores = np.stack([-scores / 2, scores / 2], axis=1)
        return scores.astype(np.float32)

    for src, dst in zip(args.input, args.output):
        save_teacher_targets(dst, logits(read_lines(src)), classes, teacher="stand-in tf-idf logistic regression")
    if args.eval_text:
        dev = read_lines(args.eval_text)
        start = time.perf_counter()
        pred = [classes[i] for i in logits(dev).argmax(1)]
        seconds = time.perf_counter() - start
        gold = read_lines(args.eval_labels)
        report = {"accuracy": round(100.0 * np.mean([a == b for a, b in zip(pred, gold)]), 2),
                  "sentences_per_second": round(len(dev) / seconds, 1),
                  "parameters": int(clf.coef_.size + clf.intercept_.size)}
        print(json.dumps(report))
        if args.report:
            with open(args.report, "w") as f:
                json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
