"""distill-split-sentences: reviews to unique sentences in SST-2's form, on nasty lines and real reviews."""

import json
import logging

import pytest

from user_dir.preprocess import sentences
from user_dir.preprocess.sentences import sentence_key, split_sentences, split_text

from conftest import DATA, read_tsv, run


def spacy_reference(docs, lower=True, min_tokens=3, exclude=()):
    """Independent: spaCy's sentencizer straight, then first occurrences by lower-cased words."""
    import re

    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    norm = lambda s: " ".join(re.findall(r"\w+(?:'\w+)*|'\w+|[^\w\s\ufffd]", s.lower()))  # noqa: E731
    seen, out = {norm(x) for x in exclude}, []
    for doc in docs:
        doc = re.sub(r"(?i)<br\s*/?\s*>", " ", doc)
        for sent in nlp(doc).sents:
            s = " ".join(t.text for t in sent if not t.is_space)
            s = s.lower() if lower else s
            if s and len(s.split()) >= min_tokens and norm(s) not in seen:
                seen.add(norm(s))
                out.append(s)
    return out


def test_sst2_form():
    assert split_text("It's a charming film. Isn't it?<br /><br />Yes!") == \
        ["it 's a charming film .", "is n't it ?", "yes !"]
    assert split_text("It's GREAT.", lower=False) == ["It 's GREAT ."]
    assert sentence_key("It 's  great .") == sentence_key("it 's great .")
    assert sentence_key("it 's great .") != sentence_key("it 's good .")


def test_nasty_lines(tmp_path, caplog):
    huge = " ".join(f"Sentence number {i} is here.<br /><br />" for i in range(8000))  # ~330 kB, one line
    raw = ("\ufeffFirst review. It was fine.\n".encode() + b"\n" + huge.encode() + b"\n"
           + b"Bad \xff byte here. It was fine.\n" + b"No newline at the end. Ok then")
    src = tmp_path / "docs.txt"
    src.write_bytes(raw)
    with caplog.at_level(logging.WARNING):
        stats = split_sentences([str(src)], str(tmp_path / "out.txt"), min_tokens=2)
    lines = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and lines[0] == "first review ." and "it was fine ." in lines
    assert lines.count("it was fine .") == 1 and stats["duplicates"] == 1
    assert "sentence number 7999 is here ." in lines and not any("<br" in x or "\ufeff" in x for x in lines)
    assert "bad \ufffd byte here ." in lines and "line 4 is not valid UTF-8" in caplog.text
    assert lines[-2] == "ok then" and "no newline at the end ." in lines
    assert stats["documents"] == 5 and stats["kept"] == len(lines) - 1
    saved = json.loads((tmp_path / "out.txt.json").read_text())
    assert saved["kept"] == stats["kept"] and not (tmp_path / "out.txt.parts").exists()


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    rows = read_tsv(DATA / "imdb" / "train.tsv")[:300]
    path = tmp_path_factory.mktemp("imdb") / "reviews.txt"
    docs = [r[0] for r in rows] + [r[0] for r in rows[:20]]  # 20 whole reviews again: all duplicates
    path.write_text("".join(d + "\n" for d in docs), encoding="utf-8")
    return path, docs


def test_real_reviews_against_spacy_workers_and_exclusion(reviews, tmp_path):
    path, docs = reviews
    # SST-2 dev sentences, one planted in a review in another case and spacing: excluded
    dev = [r[0].strip() for r in read_tsv(DATA / "glue" / "SST-2" / "dev.tsv")[:50]]
    planted = tmp_path / "planted.txt"
    planted.write_text("".join(d + "\n" for d in docs) + "Great film. " + dev[3].upper().replace(" ", "  ") + "\n")
    exclude = tmp_path / "dev.txt"
    exclude.write_text("".join(d + "\n" for d in dev))
    one = split_sentences([str(planted)], str(tmp_path / "one.txt"), [str(exclude)])
    got = (tmp_path / "one.txt").read_text(encoding="utf-8").splitlines()
    assert got == spacy_reference(docs + ["Great film. " + dev[3].upper()], exclude=dev)
    assert one["excluded"] == 1 and one["duplicates"] > 200 and one["kept"] == len(got) > 2500
    # workers and small chunks: the same file
    two = split_sentences([str(planted)], str(tmp_path / "two.txt"), [str(exclude)], workers=2,
                          chunk_bytes=50_000)
    assert (tmp_path / "two.txt").read_bytes() == (tmp_path / "one.txt").read_bytes() and two["kept"] == one["kept"]
    # the console tool, two inputs: the second's sentences are all duplicates of the first's
    proc = run(["distill-split-sentences", "--input", path, path, "--output", tmp_path / "cli.txt",
                "--exclude", exclude])
    assert json.loads(proc.stdout)["kept"] == len((tmp_path / "cli.txt").read_text().splitlines())
    assert (tmp_path / "cli.txt").read_text().splitlines() == spacy_reference(docs, exclude=dev)


class Killed(Exception):
    pass


def test_a_killed_run_resumes_its_finished_chunks(reviews, tmp_path, monkeypatch):
    path, _ = reviews
    split_sentences([str(path)], str(tmp_path / "whole.txt"), chunk_bytes=60_000)
    calls, first_run = [], [True]
    real = sentences._split_chunk

    def dies_on_the_third(*args):
        calls.append(args[1])
        if first_run[0] and len(calls) == 3:
            raise Killed  # a kill in the middle of the job
        real(*args)

    monkeypatch.setattr(sentences, "_split_chunk", dies_on_the_third)
    with pytest.raises(Killed):
        split_sentences([str(path)], str(tmp_path / "out.txt"), chunk_bytes=60_000)
    assert not (tmp_path / "out.txt").exists() and (tmp_path / "out.txt.parts").is_dir()
    done, calls[:], first_run[0] = len(calls) - 1, [], False
    split_sentences([str(path)], str(tmp_path / "out.txt"), chunk_bytes=60_000)
    assert (tmp_path / "out.txt").read_bytes() == (tmp_path / "whole.txt").read_bytes()
    assert len(calls) > 0 and done == 2 and calls[0] > 0  # the first two chunks were not redone
