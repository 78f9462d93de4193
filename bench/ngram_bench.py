"""N-gram vocabulary + extraction: this plugin against scikit-learn's CountVectorizer.

The corpus is SST-2 train repeated to --lines lines (1M by default), or, with
--data FILE.txt, that file's lines (one text each: IMDB's unlabelled reviews
for long texts) repeated or cut to --lines.  Each
method builds a top-K 1-4-gram vocabulary and then writes every line's
features, as the paper's get_dict.py + get_ngrams.py do.  Each method runs in
a fresh process so that its peak memory is its own.

    .venv/bin/python bench/ngram_bench.py [--lines 1000000] [--workers 2]
    .venv/bin/python bench/ngram_bench.py --data ../shared/data/imdb/unsup.txt --lines 50000 \
        --output bench/results/ngram_bench_imdb.json

Writes bench/results/ngram_bench.json and prints a table.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", "glue", "SST-2", "train.tsv")


def make_corpus(tsv: str, lines: int, path: str) -> None:
    with open(tsv, encoding="utf-8") as f:
        if tsv.endswith(".txt"):  # one text per line
            texts = f.read().splitlines()
        else:  # a TSV with a header, the text first
            texts = [line.split("\t")[0] for line in f.read().splitlines()[1:]]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(lines):
            out.write(texts[i % len(texts)] + "\n")


def run_ours(corpus, workdir, k, workers):
    from user_dir.preprocess.ngrams import build_vocab, extract_ngrams

    t0 = time.perf_counter()
    vocab = build_vocab([corpus], k, (1, 4), tokenizer="sklearn", workers=workers)
    vocab.save(os.path.join(workdir, "vocab.txt"))
    t1 = time.perf_counter()
    extract_ngrams(os.path.join(workdir, "vocab.txt"), corpus, os.path.join(workdir, "ours.ng"), workers=workers)
    t2 = time.perf_counter()
    return {"vocab_s": t1 - t0, "extract_s": t2 - t1, "vocab_size": len(vocab)}


def run_sklearn(corpus, workdir, k, workers):
    from sklearn.feature_extraction.text import CountVectorizer

    t0 = time.perf_counter()
    with open(corpus, encoding="utf-8") as f:
        lines = f.readlines()
    vec = CountVectorizer(ngram_range=(1, 4), max_features=k).fit(lines)
    t1 = time.perf_counter()
    # the paper's get_ngrams.py: transform with the fixed vocabulary, one id per occurrence
    x = CountVectorizer(ngram_range=(1, 4), vocabulary=vec.vocabulary_).transform(lines).tocsr()
    with open(os.path.join(workdir, "sklearn.ng"), "w") as out:
        indptr, indices, data = x.indptr, x.indices, x.data
        for i in range(x.shape[0]):
            a, b = indptr[i], indptr[i + 1]
            out.write(" ".join(str(j) for j, c in zip(indices[a:b], data[a:b]) for _ in range(c)) + "\n")
    t2 = time.perf_counter()
    return {"vocab_s": t1 - t0, "extract_s": t2 - t1, "vocab_size": len(vec.vocabulary_)}


def child(method, corpus, workdir, k, workers):
    result = {"ours": run_ours, "sklearn": run_sklearn}[method](corpus, workdir, k, workers)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result.update(peak_main_mb=own, peak_worker_mb=kids)
    print(json.dumps(result))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--max-features", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--output", default=os.path.join(HERE, "results", "ngram_bench.json"))
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        method, corpus, workdir, workers = args.child
        return child(method, corpus, workdir, args.max_features, int(workers))

    with tempfile.TemporaryDirectory() as workdir:
        corpus = os.path.join(workdir, "corpus.txt")
        make_corpus(args.data, args.lines, corpus)
        nbytes = os.path.getsize(corpus)
        results = {}
        for method in ("ours", "sklearn"):
            out = subprocess.run([sys.executable, __file__, "--max-features", str(args.max_features),
                                  "--child", method, corpus, workdir, str(args.workers)],
                                 check=True, capture_output=True, text=True, cwd=REPO)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            total = r["vocab_s"] + r["extract_s"]
            r.update(total_s=total, lines_per_s=args.lines / total)
            results[method] = r
    speedup = results["ours"]["lines_per_s"] / results["sklearn"]["lines_per_s"]
    report = {
        "bench": "ngram vocabulary + extraction", "data": os.path.abspath(args.data), "lines": args.lines,
        "mean_bytes_per_line": round(nbytes / args.lines, 1), "ngram_range": [1, 4],
        "max_features": args.max_features, "workers_ours": args.workers, "tokenizer_ours": "sklearn",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results, "speedup": speedup, "goal_speedup": 5.0,
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
    print(f"{'method':<10}{'vocab s':>10}{'extract s':>11}{'lines/s':>11}{'peak main MB':>14}{'peak worker MB':>16}")
    for name, r in results.items():
        print(f"{name:<10}{r['vocab_s']:>10.1f}{r['extract_s']:>11.1f}{r['lines_per_s']:>11.0f}"
              f"{r['peak_main_mb']:>14.0f}{r['peak_worker_mb']:>16.0f}")
    print(f"speed-up: {speedup:.2f}x (goal 5x) -> {args.output}")


if __name__ == "__main__":
    main()
