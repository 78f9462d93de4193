"""distill-augment: grow a transfer set by rule-based augmentation (D-BERT, embedding neighbours)."""

import argparse
import json

from . import run_main


def get_parser() -> argparse.ArgumentParser:
    from ..preprocess.augment import STRATEGIES, AugmentConfig

    d = AugmentConfig()
    p = argparse.ArgumentParser(
        prog="distill-augment",
        description="Write every example of a text or TSV file, then up to N new versions of each "
        "(duplicates and unchanged copies dropped), for the teacher to label. Deterministic for a "
        "seed whatever the number of workers; resumable after a kill; atomic output.",
    )
    p.add_argument("--input", required=True, metavar="FILE", help="text (one example per line) or TSV")
    p.add_argument("--output", required=True, metavar="FILE",
                   help="the originals (same order), then the new examples; TSV input gives TSV rows "
                        "of the text column(s)")
    p.add_argument("--input-format", choices=["text", "tsv"], default="text")
    p.add_argument("--text-column", type=int, nargs="+", default=[0], metavar="N",
                   help="0-based TSV column(s); two for sentence pairs (default: 0)")
    p.add_argument("--header", action="store_true", help="skip the first line")
    p.add_argument("--strategy", choices=STRATEGIES, default=d.strategy,
                   help="dbert: D-BERT's masking, same-POS replacement and n-gram windows (needs "
                        "pip install .[augment]); embedding-neighbours: replacement by nearest "
                        "neighbours in the teacher's input embeddings (default: %(default)s)")
    p.add_argument("--samples-per-example", type=int, default=d.samples_per_example, metavar="N",
                   help="draws per example; duplicates are dropped, so at most N new (default: %(default)s)")
    p.add_argument("--p-mask", type=float, default=d.p_mask, help="dbert: mask a word (default: %(default)s)")
    p.add_argument("--p-pos", type=float, default=d.p_pos,
                   help="dbert: replace a word by one of the same POS tag (default: %(default)s)")
    p.add_argument("--p-ngram", type=float, default=d.p_ngram,
                   help="dbert: keep only an n-gram window of the draw (default: %(default)s)")
    p.add_argument("--ngram-max", type=int, default=d.ngram_max,
                   help="dbert: longest window, n ~ U{1..N} (default: %(default)s)")
    p.add_argument("--mask-token", default=d.mask_token,
                   help="dbert: the mask written into the text; [MASK] is BERT's, so the teacher "
                        "sees its own mask token (default: %(default)s)")
    p.add_argument("--teacher-dir", metavar="DIR",
                   help="embedding-neighbours: a distill-import-hf output (model.pt, dict.txt, tokenizer.json)")
    p.add_argument("--p-replace", type=float, default=d.p_replace,
                   help="embedding-neighbours: replace a whole-word token (default: %(default)s)")
    p.add_argument("--num-candidates", type=int, default=d.num_candidates,
                   help="embedding-neighbours: nearest neighbours to draw from (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="(default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes (default: 1)")
    return p


def main(argv=None) -> dict:
    from ..preprocess.augment import AugmentConfig, augment_file

    args = get_parser().parse_args(argv)
    cfg = AugmentConfig(
        strategy=args.strategy, samples_per_example=args.samples_per_example, p_mask=args.p_mask,
        p_pos=args.p_pos, p_ngram=args.p_ngram, ngram_max=args.ngram_max, mask_token=args.mask_token,
        p_replace=args.p_replace, num_candidates=args.num_candidates, seed=args.seed,
    )
    result = augment_file(args.input, args.output, cfg, args.input_format, args.text_column,
                          args.header, args.workers, args.teacher_dir)
    print(json.dumps(result))
    return result


def cli_main() -> None:
    run_main(main)


if __name__ == "__main__":
    cli_main()
