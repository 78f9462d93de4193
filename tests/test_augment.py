"""distill-augment: the D-BERT rules, embedding neighbours, determinism, pairs, resume."""

import logging
import os
import random
import subprocess
from collections import Counter

import pytest

from user_dir import fileio
from user_dir.preprocess import augment as A
from user_dir.preprocess.augment import AugmentConfig, TagSampler, augment_file
from user_dir.preprocess.text_io import find_offsets

from conftest import read_tsv, run

WORDS = [("the", " "), ("film", " "), ("is", " "), ("a", " "), ("quiet", " "), ("triumph", " "),
         ("of", " "), ("craft", " "), ("and", " "), ("heart", "")]
TAGS = ["DT", "NN", "VBZ", "DT", "JJ", "NN", "IN", "NN", "CC", "NN"]
SAMPLER = TagSampler({"DT": {"the": 5, "a": 3, "this": 2}, "NN": {"film": 4, "triumph": 1, "craft": 1,
                                                                  "heart": 2, "movie": 2},
                      "VBZ": {"is": 1}, "JJ": {"quiet": 1, "loud": 3}, "IN": {"of": 1}, "CC": {"and": 1}})


def draws(cfg, n=4000):
    rng = random.Random(7)
    return [A.dbert_side(WORDS, TAGS, cfg, SAMPLER, rng) for _ in range(n)]


def test_mask_probability():
    out = draws(AugmentConfig(p_mask=0.3, p_pos=0.0, p_ngram=0.0))
    masked = sum(t == "[MASK]" for d in out for t, _ in d) / (len(out) * len(WORDS))
    assert masked == pytest.approx(0.3, abs=0.015)
    assert all(len(d) == len(WORDS) for d in out)


def test_pos_replacement_keeps_the_tag_and_follows_frequencies():
    out = draws(AugmentConfig(p_mask=0.0, p_pos=0.2, p_ngram=0.0), n=20000)
    by_tag = {}
    for tag, words in SAMPLER.words.items():
        for w in words:
            by_tag.setdefault(w, set()).add(tag)
    changed = 0
    # words whose tag has other words: every replacement is a different word of that tag
    replaceable = [i for i, t in enumerate(TAGS) if len(SAMPLER.words[t]) > 1]
    film_subs = Counter()
    for d in out:
        for i in replaceable:
            if d[i][0] != WORDS[i][0]:
                changed += 1
                assert TAGS[i] in by_tag[d[i][0]]
                if i == 1:
                    film_subs[d[i][0]] += 1
        for i in set(range(len(WORDS))) - set(replaceable):
            assert d[i][0] == WORDS[i][0]  # the tag's only word: nothing else to draw
    assert changed / (len(out) * len(replaceable)) == pytest.approx(0.2, abs=0.01)
    # 'film' (count 4) excluded: triumph 1, craft 1, heart 2, movie 2 of 6
    total = sum(film_subs.values())
    for w, share in (("triumph", 1 / 6), ("craft", 1 / 6), ("heart", 2 / 6), ("movie", 2 / 6)):
        assert film_subs[w] / total == pytest.approx(share, abs=0.03)


def test_ngram_windows():
    cfg = AugmentConfig(p_mask=0.0, p_pos=0.0, p_ngram=0.4, ngram_max=5)
    out = draws(cfg, n=10000)
    lengths = Counter(len(d) for d in out)
    assert (len(out) - lengths[len(WORDS)]) / len(out) == pytest.approx(0.4, abs=0.015)
    for n in range(1, 6):  # n ~ U{1..5}
        assert lengths[n] / len(out) == pytest.approx(0.4 / 5, abs=0.01)
    text = " ".join(t for t, _ in WORDS)
    assert all(A.detokenize(d) in text for d in out)  # a window is a contiguous piece


def test_whitespace_tokens_are_never_changed():
    # spaCy makes a token of each extra run of spaces
    words = [("good", " "), (" ", ""), ("film", " "), ("  ", ""), ("here", "")]
    tags = ["JJ", "_SP", "NN", "_SP", "RB"]
    rng = random.Random(0)
    for cfg in (AugmentConfig(p_mask=1.0, p_pos=0.0, p_ngram=0.0), AugmentConfig(p_mask=0.0, p_pos=1.0, p_ngram=0.0),
                AugmentConfig(p_mask=0.5, p_pos=0.5, p_ngram=0.0)):
        for _ in range(200):
            d = A.dbert_side(words, tags, cfg, SAMPLER, rng)
            assert len(d) == len(words) and d[1] == words[1] and d[3] == words[3]
            assert len(A.detokenize(d).split()) == 3
    masked = A.dbert_side(words, tags, AugmentConfig(p_mask=1.0, p_pos=0.0, p_ngram=0.0), SAMPLER, rng)
    assert A.detokenize(masked) == "[MASK]  [MASK]   [MASK]"
    # the same with the real tagger's tokens
    text = "a  quiet   film ,  truly "
    (tagged_words, tagged_tags), = A.tag_texts([text], A.load_tagger())
    assert any(w.isspace() for w, _ in tagged_words)
    d = A.dbert_side(tagged_words, tagged_tags, AugmentConfig(p_mask=1.0, p_pos=0.0, p_ngram=0.0), SAMPLER, rng)
    assert A.detokenize(d).split() == ["[MASK]"] * len(text.split())


def test_sampler_with_a_single_word_tag_and_unknown_tag():
    rng = random.Random(0)
    assert SAMPLER.draw("VBZ", "is", rng) is None
    assert SAMPLER.draw("XX", "foo", rng) is None
    assert SAMPLER.draw("JJ", "unseen", rng) in {"quiet", "loud"}


def write(path, lines):
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def phrases(glue):
    return [r[0] for r in read_tsv(glue / "SST-2" / "train.tsv")[:300]]


def test_invalid_utf8_is_replaced_and_named_once(phrases, tmp_path, caplog):
    src = tmp_path / "in.txt"
    src.write_bytes("\n".join(phrases[:20]).encode("utf-8") + b"\ngood \xff film\n")
    out = tmp_path / "out.txt"
    with caplog.at_level(logging.WARNING):
        res = augment_file(str(src), str(out), AugmentConfig(samples_per_example=2, seed=1), workers=1)
    lines = out.read_text(encoding="utf-8").split("\n")
    assert res["originals"] == 21 and lines[20] == "good \ufffd film"
    warnings = [r.getMessage() for r in caplog.records if "UTF-8" in r.getMessage()]
    assert len(warnings) == 1 and "line 21" in warnings[0]


def test_output_originals_first_then_new_distinct_lines(phrases, tmp_path):
    src = write(tmp_path / "in.txt", phrases[:100] + ["", "wonderful"])
    out = tmp_path / "out.txt"
    res = augment_file(str(src), str(out), AugmentConfig(samples_per_example=5, seed=3))
    lines = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert lines[:102] == phrases[:100] + ["", "wonderful"]
    new = lines[102:]
    assert res == {"originals": 102, "augmented": len(new), "lines": len(lines)}
    assert 100 < len(new) <= 5 * 101
    assert len(set(new)) == len(new) and not set(new) & set(lines[:102])  # no copies, no originals
    assert "" not in new
    assert max(len(x.split()) for x in new) <= max(len(x.split()) for x in phrases[:100])
    # a one-word line can only become the mask or another word of its tag; without windows
    # every other draw keeps its word count, so one-word lines come from it alone
    src = write(tmp_path / "one.txt", ["wonderful", "a superb film", "an awful cast"])
    augment_file(str(src), str(out), AugmentConfig(samples_per_example=20, p_mask=0.4, p_pos=0.4, p_ngram=0.0,
                                                   seed=3))
    new = out.read_text(encoding="utf-8").split("\n")[3:-1]
    one_word = [x for x in new if len(x.split()) == 1]
    assert one_word and set(one_word) <= {"[MASK]", "a", "superb", "film", "an", "awful", "cast"}
    assert all(len(x.split()) == 3 for x in new if x not in one_word)


def test_deterministic_for_a_seed_whatever_the_workers(phrases, tmp_path):
    src = write(tmp_path / "in.txt", phrases)
    outs = []
    for workers, chunk, seed in ((1, 1 << 20, 5), (2, 2000, 5), (1, 1 << 20, 6)):
        out = tmp_path / f"out-{workers}-{seed}.txt"
        augment_file(str(src), str(out), AugmentConfig(samples_per_example=4, seed=seed), workers=workers,
                     chunk_bytes=chunk)
        outs.append(out.read_text(encoding="utf-8"))
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_pairs_change_one_side_or_both(glue, tmp_path):
    rows = read_tsv(glue / "MRPC" / "train.tsv")[:60]
    src = tmp_path / "pairs.tsv"
    src.write_text("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                   + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.tsv"
    augment_file(str(src), str(out), AugmentConfig(samples_per_example=6, seed=1), fmt="tsv",
                 text_columns=(3, 4), header=True)
    lines = [x.split("\t") for x in out.read_text(encoding="utf-8").split("\n")[:-1]]
    assert all(len(x) == 2 for x in lines)
    assert lines[:60] == [[r[3], r[4]] for r in rows]
    firsts, seconds = {r[3]: r[4] for r in rows}, {r[4]: r[3] for r in rows}
    kinds = Counter()
    for a, b in lines[60:]:
        if a in firsts:
            kinds["second"] += 1
        elif b in seconds:
            kinds["first"] += 1
        else:
            kinds["both"] += 1
    n = sum(kinds.values())
    assert n > 200
    for k in ("first", "second", "both"):
        assert kinds[k] / n == pytest.approx(1 / 3, abs=0.08), kinds


def test_resume_after_a_failed_chunk(phrases, tmp_path, monkeypatch):
    src = write(tmp_path / "in.txt", phrases)
    cfg = AugmentConfig(samples_per_example=3)
    clean = tmp_path / "clean.txt"
    augment_file(str(src), str(clean), cfg, chunk_bytes=3000)
    out = tmp_path / "out.txt"
    real, calls = A._augment_chunk_dbert, []

    def flaky(*args):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill in the middle of the second chunk
        return real(*args)

    monkeypatch.setattr(A, "_augment_chunk_dbert", flaky)
    with pytest.raises(KeyboardInterrupt):
        augment_file(str(src), str(out), cfg, chunk_bytes=3000)
    assert not out.exists() and (tmp_path / "out.txt.parts").is_dir()
    calls.clear()
    monkeypatch.setattr(A, "_augment_chunk_dbert", lambda *a: calls.append(a[2]) or real(*a))
    augment_file(str(src), str(out), cfg, chunk_bytes=3000)
    num_chunks = len(find_offsets(str(src), src.stat().st_size // 3000 + 1)) - 1
    assert num_chunks >= 3 and len(calls) == num_chunks - 1  # the finished chunk is skipped
    assert out.read_text() == clean.read_text()
    assert not (tmp_path / "out.txt.parts").exists()


def test_embedding_neighbours(imported_teacher, tmp_path):
    table = A.load_neighbours(str(imported_teacher), 5)
    assert len(table.get("good")) == 5 and "good" not in table.get("good")
    assert all(w.isalpha() for w in table.get("film"))
    src = write(tmp_path / "in.txt", ["a good film , truly !", "Great Acting"] * 1 + ["fine"])
    out = tmp_path / "out.txt"
    cfg = AugmentConfig(strategy="embedding-neighbours", samples_per_example=30, p_replace=0.5,
                        num_candidates=5)
    augment_file(str(src), str(out), cfg, teacher_dir=str(imported_teacher))
    lines = out.read_text().split("\n")[:-1]
    assert lines[:3] == ["a good film , truly !", "Great Acting", "fine"]
    firsts = [x for x in lines[3:] if len(x.split()) == 6]
    assert firsts
    for x in firsts:
        for old, new in zip("a good film , truly !".split(), x.split()):
            assert new == old or new in table.get(old)  # punctuation never changes
    # replacement rate per replaceable word: 0.5, less the draws lost as duplicates
    rng = random.Random(0)
    words, keys = table.split("a good film , truly !")
    assert keys[3] is None and keys[5] is None and keys[1] == "good"
    n, changed = 4000, 0
    for _ in range(n):
        d = A.neighbour_side(words, keys, cfg, table, rng)
        changed += sum(a != b for a, b in zip(d, words))
    replaceable = sum(k is not None for k in keys)
    assert changed / (n * replaceable) == pytest.approx(0.5, abs=0.02)
    # a capitalised word is looked up lower-cased, as the teacher's tokenizer sees it
    assert table.split("Great Acting")[1] == ["great", "acting"]


def test_refusals(tmp_path, imported_teacher):
    src = write(tmp_path / "in.txt", ["a b"])
    for argv, message in (
        (["--p-mask", "1.5"], "--p-mask must be in"),
        (["--p-mask", "0.6", "--p-pos", "0.6"], "at most 1"),
        (["--strategy", "embedding-neighbours"], "needs --teacher-dir"),
        (["--strategy", "embedding-neighbours", "--teacher-dir", tmp_path], "model.pt not found"),
        (["--text-column", "0", "1"], "pairs need --input-format tsv"),
    ):
        proc = run(["distill-augment", "--input", src, "--output", tmp_path / "o.txt", *argv], check=False)
        assert proc.returncode == 2 and message in proc.stderr, (argv, proc.stderr[-500:])
    proc = run(["distill-augment", "--input", tmp_path / "missing.txt", "--output", tmp_path / "o.txt"],
               check=False)
    assert proc.returncode == 2 and "missing.txt" in proc.stderr
    bad = tmp_path / "bad.tsv"
    bad.write_text("x\ty\nonly-one-column\n")
    proc = run(["distill-augment", "--input", bad, "--output", tmp_path / "o.tsv", "--input-format", "tsv",
                "--text-column", "0", "1"], check=False)
    assert proc.returncode == 2 and "line 2" in proc.stderr


def test_neighbours_read_the_teacher_with_the_models_loader(imported_teacher, monkeypatch):
    import torch

    from user_dir.models import teacher_embeddings

    teacher = teacher_embeddings.load_teacher_embeddings(str(imported_teacher / "model.pt"))
    # what the table was built from before: dict.txt after fairseq's four specials, model.pt's matrix
    with open(imported_teacher / "dict.txt", encoding="utf-8") as f:
        assert teacher.symbols[4:] == [line.rsplit(" ", 1)[0] for line in f if line.strip()]
    state = torch.load(imported_teacher / "model.pt", map_location="cpu", weights_only=False)["model"]
    (key,) = [k for k in state if k.endswith("embed_tokens.weight")]
    assert torch.equal(teacher.weight, state[key].float())
    calls = []
    real = teacher_embeddings.load_teacher_embeddings
    monkeypatch.setattr(teacher_embeddings, "load_teacher_embeddings", lambda p: calls.append(p) or real(p))
    table = A.NeighbourTable(str(imported_teacher), 5)
    assert calls == [str(imported_teacher / "model.pt")]
    assert table.table == A.load_neighbours(str(imported_teacher), 5).table


def test_one_run_at_a_time_and_killed_runs_cleared(phrases, tmp_path):
    src = write(tmp_path / "in.txt", phrases[:30])
    out = tmp_path / "out.txt"
    cfg = AugmentConfig(samples_per_example=2)
    with fileio.locked(str(out) + ".parts"):
        with pytest.raises(fileio.WorkDirLocked, match=f"in use by process {os.getpid()}"):
            augment_file(str(src), str(out), cfg)
        assert not out.exists()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [tmp_path / f".out.txt.{dead.pid}.k2j4h_x9.tmp",
             tmp_path / "out.txt.parts" / f".part-00000.aug.{dead.pid}.x.tmp"]
    live = tmp_path / f".out.txt.{os.getppid()}.q8w7e6r5.tmp"
    for p in stale + [live]:
        p.write_text("x" * 100)
    res = augment_file(str(src), str(out), cfg)
    assert res["originals"] == 30
    assert sorted(n for n in os.listdir(tmp_path) if ".tmp" in n) == [live.name]
    assert not (tmp_path / "out.txt.parts").exists()
