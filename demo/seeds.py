"""Several seeds of one demo: each row's metric over the seeds' report.json files of demo/report.py.

    python demo/seeds.py WORK/rosita/report.json WORK/rosita/seed2/report.json ... \
        --compare "ROSITA setting 4" "ROSITA setting 1" --output WORK/rosita/seeds

Writes OUTPUT.json and OUTPUT.md (a table: mean, sample standard deviation and each seed's value of
every metric column that all reports have, for every row of the first report, in its order) and prints
the table. ``--compare A B`` adds the paired difference A - B of ``--metric`` (default: the first of
accuracy, f1, mcc, acc_and_f1 the reports have) seed by seed, its mean and how many seeds A wins.
A report that is not demo/report.py's, or lacks a row of the first one, is refused, naming the file:
seeds are compared row by row.
"""

import argparse
import json
import statistics

from user_dir.fileio import atomic_output

METRICS = ("accuracy", "f1", "mcc", "acc_and_f1")


def load(paths):
    reports = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                models = json.load(f)["models"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"{path}: not a report.json of demo/report.py ({type(e).__name__}: {e})")
        reports.append(models)
    names = list(reports[0])
    for path, models in zip(paths, reports):
        missing = [n for n in names if n not in models]
        if missing:
            raise SystemExit(f"{path}: no row {', '.join(map(repr, missing))} (the first report has it)")
    return names, reports


def spread(values):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(mean, 2), "std": round(std, 2), "min": min(values), "max": max(values), "seeds": values}


def summarise(paths, compare=(), metric=None):
    """{"reports", "rows": {name: {metric: spread}}, "compare": [...]} over the seeds' reports."""
    names, reports = load(paths)
    metrics = [m for m in METRICS if all(m in r[n] for r in reports for n in names)]
    if not metrics or (metric is not None and metric not in metrics):
        raise SystemExit(f"{paths[0]}: the reports do not all have {metric or ' or '.join(METRICS)} for every row")
    m = metric or metrics[0]
    rows = {n: {m: spread([r[n][m] for r in reports]) for m in metrics} for n in names}
    for n in names:
        rows[n]["sentences_per_second"] = spread([r[n]["sentences_per_second"] for r in reports])
    pairs = []
    for a, b in compare:
        for n in (a, b):
            if n not in rows:
                raise SystemExit(f"--compare: no row {n!r} in {paths[0]}")
        diffs = [round(r[a][m] - r[b][m], 2) for r in reports]
        pairs.append({"a": a, "b": b, "metric": m, "differences": diffs,
                      "mean": round(statistics.fmean(diffs), 2), "a_wins": sum(d > 0 for d in diffs),
                      "ties": sum(d == 0 for d in diffs), "seeds": len(diffs)})
    return {"reports": list(paths), "metrics": metrics, "rows": rows, "compare": pairs}


def table(summary):
    metrics = summary["metrics"]
    head = ["model"] + [f"{m} (mean ± sd)" for m in metrics] + [f"{metrics[0]} by seed", "sentences/s (mean)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in summary["rows"].items():
        cells = [name] + [f"{row[m]['mean']:.2f} ± {row[m]['std']:.2f}" for m in metrics]
        cells += [", ".join(f"{v:.2f}" for v in row[metrics[0]]["seeds"]),
                  f"{row['sentences_per_second']['mean']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for p in summary["compare"]:
        lines.append("")
        lines.append(f"{p['a']} - {p['b']} ({p['metric']}): {', '.join(f'{d:+.2f}' for d in p['differences'])}; "
                     f"mean {p['mean']:+.2f}, {p['a']} ahead in {p['a_wins']} of {p['seeds']} seeds"
                     + (f" ({p['ties']} tied)" if p["ties"] else ""))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="report.json of each seed (demo/report.py's)")
    parser.add_argument("--compare", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="paired difference A - B of --metric, seed by seed (repeatable)")
    parser.add_argument("--metric", choices=METRICS, help="the metric --compare uses (default: the first one found)")
    parser.add_argument("--output", required=True, help="writes OUTPUT.json and OUTPUT.md")
    args = parser.parse_args(argv)
    summary = summarise(args.reports, args.compare, args.metric)
    text = table(summary)
    with atomic_output(args.output + ".json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    with atomic_output(args.output + ".md", "w", encoding="utf-8") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
