"""demo/mlm_distill.sh's summary: the masked-LM stages from their fairseq logs, the SST-2 rows
from mlm/report.json, the issue's goals checked; each distillation loss term's curve in a PNG.

    python demo/mlm_summary.py --work WORK --output WORK/mlm/summary.json --curves WORK/mlm/losses.png

Reads WORK/logs/mlm-adapt.log and mlm-distill.log (fairseq's simple log format: ``train_inner``
lines ``key=value``, validation lines ``| key value |``) and WORK/mlm/report.json.
"""

import argparse
import json
import os
import re

from user_dir.fileio import atomic_output

TERMS = ("loss", "kd_loss", "mlm_loss", "cos_loss", "mse_loss")
TITLES = {"loss": "loss (weighted sum, bits)", "kd_loss": "kd_loss (T\u00b2 KL, nats)", "mlm_loss": "mlm_loss (CE, bits)",
          "cos_loss": "cos_loss (1 - cosine)", "mse_loss": "mse_loss (logit MSE)"}


def number(v):
    try:
        return float(v)
    except ValueError:
        return None


def parse_log(path):
    """(train_inner records, validation records, training seconds) of one fairseq-train log.

    A log holds every launch of the run (appended on resume): the records follow the updates,
    and a resumed launch's lines replace those of the updates it repeats.
    """
    train, valid, seconds = {}, {}, 0.0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if "| train_inner |" in line:
                rec = {k: number(v) for k, v in re.findall(r"(\w+)=([^,\s]+)", line.split("| train_inner |", 1)[1])}
                if rec.get("num_updates") is not None:
                    train[int(rec["num_updates"])] = rec
            elif "| valid on " in line:
                rec = {k: number(v) for k, v in re.findall(r"\| (\w+) ([^|\s]+) ", line + " ")}
                if rec.get("num_updates") is not None:
                    valid[int(rec["num_updates"])] = rec
            m = re.search(r"done training in ([\d.]+) seconds", line)
            if m:
                seconds += float(m.group(1))
    return [train[k] for k in sorted(train)], [valid[k] for k in sorted(valid)], seconds


def plot_curves(train, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms = [t for t in TERMS if any(r.get(t) is not None for r in train)]
    if not terms:
        raise ValueError("the distillation log has no train_inner line with a loss (--log-interval above the updates?)")
    fig, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 3.0), squeeze=False)
    for ax, term in zip(axes[0], terms):
        pts = [(r["num_updates"], r[term]) for r in train if r.get(term) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2)
        ax.set_title(TITLES[term], fontsize=9)
        ax.set_xlabel("updates", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_output(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def summarize(work):
    logs = os.path.join(work, "logs")
    _, adapt_valid, adapt_s = parse_log(os.path.join(logs, "mlm-adapt.log"))
    distill_train, distill_valid, distill_s = parse_log(os.path.join(logs, "mlm-distill.log"))
    if not adapt_valid or not distill_valid:
        raise ValueError(f"{logs}: mlm-adapt.log or mlm-distill.log has no validation line: did the runs finish?")
    with open(os.path.join(work, "mlm", "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    models = report["models"]
    teacher, distilled = models["teacher"], models["distilled 3L"]
    extracted, adapted = models["extracted 3L, not distilled"], models["adapted teacher 6L"]
    last = distill_valid[-1]
    out = {
        "adaptation": {"updates": int(adapt_valid[-1]["num_updates"]), "seconds": round(adapt_s),
                       "valid_loss_bits": adapt_valid[-1]["loss"], "valid_ppl": adapt_valid[-1].get("ppl"),
                       # the distillation's validation: the adapted teacher on the same draw of targets
                       "valid_masked_token_accuracy": last.get("teacher_mlm_accuracy")},
        "distillation": {"updates": int(last["num_updates"]), "seconds": round(distill_s),
                         "valid": {k: last.get(k) for k in TERMS + ("mlm_accuracy", "teacher_mlm_accuracy")
                                   if last.get(k) is not None},
                         "first_valid": {k: distill_valid[0].get(k) for k in ("loss", "mlm_accuracy")}},
        "sst2_dev_accuracy": {name: m["accuracy"] for name, m in models.items()},
        "parameters": {name: m.get("parameters") for name, m in models.items()},
        "parameters_without_embedding": {name: m.get("parameters_without_embedding") for name, m in models.items()},
        "sentences_per_second": {name: m["sentences_per_second"] for name, m in models.items()},
    }
    share = distilled["accuracy"] / teacher["accuracy"]
    speed = distilled["sentences_per_second"] / teacher["sentences_per_second"]
    out["goals"] = {
        "distilled_share_of_teacher_accuracy": round(share, 4),
        "distilled_share_of_adapted_teacher_accuracy": round(distilled["accuracy"] / adapted["accuracy"], 4),
        "distilled_speedup_over_teacher": round(speed, 2),
        "distilled_minus_extracted": round(distilled["accuracy"] - extracted["accuracy"], 2),
        "keeps_97_percent": share >= 0.97,
        "beats_extraction": distilled["accuracy"] > extracted["accuracy"],
    }
    return out, distill_train


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", required=True, help="the demo's work directory")
    p.add_argument("--output", required=True, help="summary JSON to write")
    p.add_argument("--curves", help="PNG of each distillation loss term against updates")
    a = p.parse_args(argv)
    out, train = summarize(a.work)
    if a.curves:
        plot_curves(train, a.curves, "DistilBERT's loss terms, training (fairseq train_inner averages)")
        out["curves"] = os.path.basename(a.curves)
    with atomic_output(a.output, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out["goals"]))


if __name__ == "__main__":
    main()
