"""demo/imdb.sh on a few hundred reviews (its own file, so the suite's workers run it beside test_demos)."""

import json

import numpy as np

from conftest import demo


def test_imdb_demo_on_a_few_hundred_reviews(tmp_path):
    """demo/imdb.sh's mechanism: head + tail cut, transfer set with unlabelled reviews, KD then
    KD+FT, the gold-label baselines and the truncation ablation, from an empty work dir."""
    work = tmp_path / "imdb"
    out = demo("imdb.sh", "--smoke", work=work)
    report = json.loads((work / "report.json").read_text())
    assert list(report["models"]) == ["teacher", "DAN (KD)", "DAN (KD+FT)", "fastText (bigrams)",
                                      "TF-IDF 1-2-gram LR"]
    assert report["task"].startswith("imdb test (200 examples)")
    assert report["models"]["teacher"]["window"] == {"positions": 64, "keep_head": 16}
    # the transfer set: labelled train and unlabelled reviews, rows aligned with the teacher's logits
    assert np.load(work / "data-bin" / "distill" / "train.npy").shape == (500, 2)
    assert not (work / "data-bin" / "label" / "train.bin").exists()
    # every fine-tuning review was cut to the window's 62 WordPieces, head 16 + tail
    assert max(len(line.split()) for line in (work / "teacher" / "ft.bpe").read_text().splitlines()) == 62
    truncation = json.loads((work / "truncation.json").read_text())
    assert truncation["test_reviews"] == 100 and set(truncation["accuracy"]) == {"head 16 + tail", "head only"}
    assert "valid on" in out.stdout  # (reruns: the main demo's test, same step helpers)
