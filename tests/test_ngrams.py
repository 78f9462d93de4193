import json
import os

import numpy as np
import pytest
from fairseq.data import Dictionary

from user_dir.data import ngrams, text_io
from user_dir.data.ngrams import JOINER, Featurizer, NgramVocab, build_vocab, extract_ngrams
from user_dir.data.text_io import count_lines, find_offsets, iter_lines

from conftest import read_tsv, run


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return str(path)


def test_tokenizers():
    text = "It's a GREAT film , is n't it ?!"
    assert ngrams.TOKENIZERS["default"](text) == ["it's", "a", "great", "film", ",", "is", "n't", "it", "?", "!"]
    assert ngrams.TOKENIZERS["sklearn"](text) == ["it", "great", "film", "is", "it"]
    assert ngrams.TOKENIZERS["whitespace"](text)[:3] == ["It's", "a", "GREAT"]
    # the joiner never survives inside a token
    assert JOINER not in "".join(ngrams.TOKENIZERS["whitespace"](f"a{JOINER}b c"))


def reference_features(text, vocab):
    """The documented text order, written out plainly: by end position, shorter first."""
    toks = ngrams.TOKENIZERS[vocab.tokenizer](text)
    lo, hi = vocab.ngram_range
    known = {g for g, _ in vocab.entries}
    out = []
    for end in range(len(toks)):
        for n in range(lo, hi + 1):
            if end - n + 1 >= 0 and JOINER.join(toks[end - n + 1:end + 1]) in known:
                out.append(JOINER.join(toks[end - n + 1:end + 1]))
    return out


def test_text_order_is_by_end_position():
    every = [g for n in range(1, 5) for g in map(JOINER.join, zip(*[list("abcdef")[k:] for k in range(n)]))]
    featurize = ngrams.BatchFeaturizer(every, "whitespace", (1, 4))

    def feats(lines):
        ids, per_line = featurize(lines)
        return [every[i] for i in ids], per_line.tolist()

    got, per_line = feats(["a b c", "", "x", "a b c d e f"])
    assert per_line == [6, 0, 0, 18]
    assert got[:6] == ["a", "b", f"a{JOINER}b", "c", f"b{JOINER}c", f"a{JOINER}b{JOINER}c"]
    # a prefix of the features is the features of a prefix of the text
    assert got[6:12] == got[:6]


RAW_TEXTS = [
    "It's GREAT!! (Really.) Not bad -- \"not bad\" at all...",
    "   ", "", "tabs\tand\u00a0no-break\u2028separators , here",
    f"joiner{JOINER}inside words and caf\u00e9 na\u00efve r\u00e9sum\u00e9s",
    "\ufffd\ufffd lone replacement \ufffd chars\ufffd", "won't won't won't 'quoted' words'",
    "one", "xx yy zz xx yy zz xx yy zz",
]


@pytest.mark.parametrize("tokenizer,ngram_range", [("default", (1, 4)), ("default", (2, 3)),
                                                   ("sklearn", (1, 2)), ("whitespace", (1, 3))])
def test_featurizer_matches_reference_on_raw_text(tmp_path, glue, tokenizer, ngram_range):
    texts = [r[0] for r in read_tsv(glue / "SST-2" / "dev.tsv")[:300]] + RAW_TEXTS
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(texts + [t.upper() for t in texts]) + "\n", encoding="utf-8")
    vocab = build_vocab([str(corpus)], 4000, ngram_range, tokenizer)
    # an entry whose prefixes are no entries: the trie must still find it
    lo, hi = ngram_range
    rare = JOINER.join(["xx", "yy", "zz", "xx"][:hi])
    vocab.entries = [e for e in vocab.entries if not rare.startswith(e[0])] + [(rare, 1)]
    strings = [g for g, _ in vocab.entries]
    featurize = ngrams.BatchFeaturizer(strings, tokenizer, ngram_range)
    featurize.encode.codes.max_size = 50  # the memo is cleared between batches
    for lines in (texts, texts[::-1], RAW_TEXTS):
        ids, per_line = featurize(lines)
        assert per_line.tolist() == [len(reference_features(t, vocab)) for t in lines]
        got = [strings[i] for i in ids]
        assert got == [g for t in lines for g in reference_features(t, vocab)]
    assert rare in [strings[i] for i in featurize(["xx yy zz xx yy"])[0]]


def test_counting_matches_brute_force_and_is_parallel_safe(tmp_path, glue):
    rows = read_tsv(glue / "SST-2" / "train.tsv")[:3000]
    path = tmp_path / "c.txt"
    path.write_text("".join(r[0] + "\n" for r in rows), encoding="utf-8")
    expected = {}
    for r in rows:
        toks = ngrams.TOKENIZERS["default"](r[0])
        for n in range(1, 4):
            for i in range(len(toks) - n + 1):
                g = JOINER.join(toks[i:i + n])
                expected[g] = expected.get(g, 0) + 1
    serial = build_vocab([str(path)], 500, (1, 3), workers=1)
    parallel = build_vocab([str(path), str(path)], 500, (1, 3), workers=2)
    top = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:500]
    assert serial.entries == top
    assert parallel.entries == [(g, 2 * c) for g, c in top]
    assert serial.meta["num_lines"] == 3000 and parallel.meta["num_lines"] == 6000


def test_sklearn_tokenizer_reproduces_countvectorizer(tmp_path, glue):
    from sklearn.feature_extraction.text import CountVectorizer

    texts = [r[0] for r in read_tsv(glue / "SST-2" / "train.tsv")[:5000]]
    path = tmp_path / "c.txt"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    k = 2000
    vocab = build_vocab([str(path)], k, (1, 4), tokenizer="sklearn", workers=2)
    cv = CountVectorizer(ngram_range=(1, 4), max_features=k).fit(texts)
    counts = np.asarray(CountVectorizer(ngram_range=(1, 4)).fit(texts).transform(texts).sum(axis=0)).ravel()
    kth = np.sort(counts)[::-1][k - 1]
    ours = {g.replace(JOINER, " ") for g, c in vocab.entries if c > kth}
    theirs = {g for g in cv.vocabulary_ if True}
    # identical above the boundary count (ties at the boundary are arbitrary in sklearn)
    assert ours and ours <= theirs
    assert len(ours) == sum(1 for c in counts if c > kth)


def test_pruning_bounds_memory_and_keeps_frequent(tmp_path):
    rng = np.random.default_rng(0)
    lines = [" ".join(f"w{rng.integers(10**6)}" for _ in range(8)) + " common words here" for _ in range(4000)]
    path = tmp_path / "c.txt"
    path.write_text("\n".join(lines) + "\n")
    vocab = build_vocab([str(path)], 10, (1, 2), workers=1, max_in_memory=5000)
    assert vocab.meta["pruned_below"] >= 1
    top = dict(vocab.entries)
    assert top["common"] == 4000 and top[f"common{JOINER}words"] == 4000


def test_vocab_file_is_a_fairseq_dictionary(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("<unk> a b\n<s> a b\n a </s>\n", encoding="utf-8")
    vocab = build_vocab([str(path)], 100, (1, 2), tokenizer="whitespace")
    assert not {"<unk>", "<s>", "</s>", "<pad>"} & {g for g, _ in vocab.entries}
    vocab.save(str(tmp_path / "v.txt"))
    d = Dictionary.load(str(tmp_path / "v.txt"))
    assert d.symbols[d.nspecial:] == [g for g, _ in vocab.entries]
    again = NgramVocab.load(str(tmp_path / "v.txt"))
    assert again.entries == vocab.entries and again.tokenizer == "whitespace" and again.ngram_range == (1, 2)


def test_vocab_load_refuses_bad_files(tmp_path):
    v = tmp_path / "v.txt"
    v.write_text("a 3\nb 2\n")
    with pytest.raises(FileNotFoundError, match="v.txt.json"):
        NgramVocab.load(str(v))
    NgramVocab([("a", 3), ("b", 2)]).save(str(v))
    v.write_text("a 3\nb two\n")
    with pytest.raises(ValueError, match=r"v.txt: line 2"):
        NgramVocab.load(str(v))


def test_line_rules(tmp_path):
    data = b"\xef\xbb\xbffirst\r\n\nbad \xff\xfe bytes\nlone\rcr\nlast"
    path = write_bytes(tmp_path / "x.txt", data)
    assert list(iter_lines(path)) == ["first", "", "bad \ufffd\ufffd bytes", "lone\rcr", "last"]
    assert count_lines(path) == 5
    assert count_lines(write_bytes(tmp_path / "e.txt", b"")) == 0
    offsets = find_offsets(path, 3)
    chunks = [list(iter_lines(path, a, b)) for a, b in zip(offsets[:-1], offsets[1:])]
    assert sum(chunks, []) == list(iter_lines(path))


def _vocab(tmp_path, text="good movie\nbad movie\ngood good film\n"):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text)
    vocab = build_vocab([str(corpus)], 100, (1, 2))
    vocab.save(str(tmp_path / "v.txt"))
    return str(tmp_path / "v.txt"), vocab


@pytest.mark.parametrize("workers", [1, 2])
def test_extraction_keeps_one_line_per_input_line(tmp_path, workers, caplog):
    vocab_path, vocab = _vocab(tmp_path)
    data = b"\xef\xbb\xbfgood movie\r\n\n   \nunknown words only\ngood \xff movie\nlone\rgood\nbad film"
    src = write_bytes(tmp_path / "in.txt", data)
    out = tmp_path / "out.txt"
    n = extract_ngrams(vocab_path, src, str(out), workers=workers, chunk_bytes=16)
    lines = out.read_text(encoding="utf-8").split("\n")
    assert n == 7 and lines[-1] == "" and len(lines) - 1 == 7
    assert lines[0] == f"good movie good{JOINER}movie"
    assert lines[1:4] == ["", "", ""]
    assert lines[4] == f"good movie good{JOINER}movie"  # U+FFFD is dropped like a space
    assert lines[5] == "good"
    assert lines[6] == "bad film"
    assert "line 5" in caplog.text and "not valid UTF-8" in caplog.text
    assert not os.path.exists(str(out) + ".parts")


def test_extraction_matches_featurizer(tmp_path, glue):
    texts = [r[0] for r in read_tsv(glue / "SST-2" / "dev.tsv")]
    src = tmp_path / "dev.txt"
    src.write_text("\n".join(texts) + "\n")
    vocab = build_vocab([str(src)], 3000, (1, 3))
    vocab.save(str(tmp_path / "v.txt"))
    extract_ngrams(str(tmp_path / "v.txt"), str(src), str(tmp_path / "dev.ng"), workers=2)
    d = Dictionary.load(str(tmp_path / "v.txt"))
    feat = Featurizer(vocab.settings(), d.symbols, d.nspecial)
    batch = feat.batch(texts)
    for text, line, ids in zip(texts, (tmp_path / "dev.ng").read_text().split("\n"), batch):
        assert [d.index(t) for t in line.split()] == feat(text) == ids.tolist()
        assert line.split() == reference_features(text, vocab)


def test_extraction_resumes_finished_chunks(tmp_path):
    vocab_path, _ = _vocab(tmp_path)
    src = tmp_path / "in.txt"
    src.write_text("good movie\n" * 50 + "bad film\n" * 50)
    out = str(tmp_path / "out.txt")
    # a first run killed after chunk 0: its part and manifest are on disk
    offsets = find_offsets(str(src), 4)
    parts = out + ".parts"
    text_io.prepare_work_dir(parts, {
        "input": os.path.abspath(src), "size": os.path.getsize(src), "mtime": os.path.getmtime(src),
        "vocab": os.path.abspath(vocab_path), "vocab_mtime": os.path.getmtime(vocab_path), "offsets": offsets,
    })
    ngrams._extract_chunk(vocab_path, os.path.getmtime(vocab_path), str(src), offsets[0], offsets[1],
                          os.path.join(parts, "part-00000"))
    marker = open(os.path.join(parts, "part-00000")).read().replace("good", "RESUMED")
    open(os.path.join(parts, "part-00000"), "w").write(marker)
    extract_ngrams(vocab_path, str(src), out, workers=1, chunk_bytes=os.path.getsize(src) // 4 + 1)
    text = open(out).read()
    assert "RESUMED" in text  # the finished chunk was not redone
    assert text.count("\n") == 100


def test_console_tools(tmp_path, glue):
    rows = read_tsv(glue / "SST-2" / "train.tsv")[:2000]
    src = tmp_path / "train.txt"
    src.write_text("".join(r[0] + "\n" for r in rows))
    run(["distill-ngram-dict", "--input", src, "--output", tmp_path / "v.txt", "--ngram-range", "1", "2",
         "--max-features", "500", "--workers", "2"])
    settings = json.loads((tmp_path / "v.txt.json").read_text())
    assert settings["ngram_range"] == [1, 2] and settings["num_features"] == 500
    run(["distill-extract-ngrams", "--vocab", tmp_path / "v.txt", "--input", src,
         "--output", tmp_path / "train.ng", "--workers", "2"])
    assert count_lines(str(tmp_path / "train.ng")) == 2000
    bad = run(["distill-extract-ngrams", "--vocab", tmp_path / "missing.txt", "--input", src,
               "--output", tmp_path / "x"], check=False)
    assert bad.returncode == 2 and "vocabulary not found" in bad.stderr and "missing.txt" in bad.stderr
    (tmp_path / "novocab.txt").write_text("a 1\n")
    bad = run(["distill-extract-ngrams", "--vocab", tmp_path / "novocab.txt", "--input", src,
               "--output", tmp_path / "x"], check=False)
    assert bad.returncode == 2 and "novocab.txt.json not found" in bad.stderr
