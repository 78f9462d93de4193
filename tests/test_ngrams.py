import json
import os
import random
import subprocess
import time
import unicodedata

import numpy as np
import pytest
from fairseq.data import Dictionary

from user_dir import fileio
from user_dir.preprocess import ngram_kernels, ngram_table, ngrams
from user_dir.preprocess.ngrams import JOINER, Featurizer, NgramVocab, build_vocab, extract_ngrams, write_vocab
from user_dir.preprocess.ngram_table import NONE, unpack
from user_dir.preprocess.text_io import DecodeReport, count_lines, find_offsets, iter_line_batches, iter_lines

from conftest import BIN, read_tsv, run


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


CONTROL_TEXT = "good\x00movie \x07bad\x1b film\x7f\x80 very\x9fnice\x00"


@pytest.mark.parametrize("tokenizer", sorted(ngrams.TOKENIZERS))
def test_control_characters_are_whitespace(tokenizer):
    tokenize = ngrams.TOKENIZERS[tokenizer]
    assert tokenize(CONTROL_TEXT) == tokenize("good movie bad film very nice")
    assert tokenize.split(CONTROL_TEXT) == "good movie bad film very nice".split()
    # whitespace controls (tab, NEL, separators) were spaces already
    assert tokenize("good\tmovie\x85bad\x1cfilm") == tokenize("good movie bad film")


def test_control_characters_in_counting_extraction_and_featurizer(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text(f"{CONTROL_TEXT}\n\x00\x01\n" + "good movie\n" * 3, encoding="utf-8")
    vocab = build_vocab([str(src)], 100, (1, 2))
    grams = [g for g, _ in vocab.entries]
    assert not any(unicodedata.category(c) == "Cc" for g in grams for c in g)
    assert dict(vocab.entries)[f"good{JOINER}movie"] == 4  # NUL joined them as a space would
    vocab.save(str(tmp_path / "v.txt"))
    extract_ngrams(str(tmp_path / "v.txt"), str(src), str(tmp_path / "c.ng"))
    lines = (tmp_path / "c.ng").read_text(encoding="utf-8").split("\n")[:-1]
    assert lines[1] == "" and lines[0].split() == reference_features(CONTROL_TEXT, vocab)
    d = Dictionary.load(str(tmp_path / "v.txt"))
    feat = Featurizer(vocab.settings(), d.symbols, d.nspecial)
    texts = list(iter_lines(str(src)))
    for text, line in zip(texts, lines):
        assert feat(text) == [d.index(t) for t in line.split()]


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
    "one", "xx yy zz xx yy zz xx yy zz", "nul\x00inside\x1b[0m esc\x7f and c1\x9f\x85 codes\x00",
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
    for lines in (texts, texts[::-1], RAW_TEXTS):
        ids, per_line = featurize(lines)
        assert per_line.tolist() == [len(reference_features(t, vocab)) for t in lines]
        got = [strings[i] for i in ids]
        assert got == [g for t in lines for g in reference_features(t, vocab)]
    assert rare in [strings[i] for i in featurize(["xx yy zz xx yy"])[0]]


# characters where a hand-written tokenizer could part from Python's regex: apostrophes, U+FFFD,
# the joiner, controls and odd whitespace, combining marks and non-decimal digits (\w or not),
# case changes that alter the length (İ, ß upper) or depend on context (final sigma), a lone
# surrogate, CJK and an emoji, a newline inside a text, an HTML line break
FUZZ_ALPHABET = (list("abcAB'' '") + ["\ufffd", JOINER, "\x00", "\x1b", "\x85", "\x1c", "\t", "\n", "\r",
                                     "\u00a0", "\u2028", "\u0301", "\u00b2", "\u2163", "_", "-", "!",
                                     "\u0130", "\u03a3", "\u03c3", "\u00df", "\ud800", "\u4e2d", "\U0001f600",
                                     "<br />", "<BR>", "\u00e9"])


@pytest.mark.parametrize("tokenizer,ngram_range", [("default", (1, 4)), ("sklearn", (1, 3)),
                                                   ("whitespace", (2, 4))])
def test_compiled_featurizer_equals_the_regex_tokenizers_on_random_text(tokenizer, ngram_range):
    rng = random.Random(7)
    texts = ["".join(rng.choice(FUZZ_ALPHABET) for _ in range(rng.randrange(0, 40))) for _ in range(3000)]
    tokenize = ngrams.TOKENIZERS[tokenizer]
    lo, hi = ngram_range
    # every n-gram of half the texts is an entry, so the other half meets known and unknown ones
    grams = {JOINER.join(toks[i:i + n]) for t in texts[::2] for toks in [tokenize(t)]
             for n in range(lo, hi + 1) for i in range(len(toks) - n + 1)}
    strings = sorted(grams)
    vocab = NgramVocab([(g, 1) for g in strings], tokenizer, ngram_range)
    featurize = ngrams.BatchFeaturizer(strings, tokenizer, ngram_range)
    threaded = ngrams.BatchFeaturizer(strings, tokenizer, ngram_range, threads=3)
    # short lines, then one longer than a quarter of the batch: the token arrays grow before it
    grows = texts[:50] + ["".join(rng.choice(FUZZ_ALPHABET) for _ in range(5000))] + texts[50:60]
    for batch in (texts, texts[1::2], [t for t in texts if t.isascii()], texts[:1], [], grows):
        ids, per_line = featurize(batch)
        assert per_line.tolist() == [len(reference_features(t, vocab)) for t in batch]
        assert [strings[i] for i in ids] == [g for t in batch for g in reference_features(t, vocab)]
        ids3, per_line3 = threaded(batch)  # runs of lines in threads, joined in order
        assert np.array_equal(ids3, ids) and np.array_equal(per_line3, per_line)


def _regex_counts(texts, tokenizer, lo, hi):
    counts = {}
    for t in texts:
        toks = ngrams.TOKENIZERS[tokenizer](t)
        for n in range(lo, hi + 1):
            for i in range(len(toks) - n + 1):
                g = JOINER.join(toks[i:i + n])
                counts[g] = counts.get(g, 0) + 1
    return counts


def _chunk_counts(path, tokenizer, lo, hi, max_in_memory=10**6):
    tokens, rows, counts, *_ = ngrams._count_chunk(str(path), 0, os.path.getsize(path), tokenizer, lo, hi,
                                                   max_in_memory)
    ids = unpack(rows)
    return {JOINER.join(tokens[i] for i in row if i != int(NONE)): c
            for row, c in zip(ids.tolist(), counts.tolist())}


@pytest.mark.parametrize("tokenizer,ngram_range", [("default", (1, 4)), ("sklearn", (2, 3)),
                                                   ("whitespace", (1, 5))])
def test_compiled_counting_equals_the_regex_tokenizers_on_random_text(tmp_path, tokenizer, ngram_range):
    rng = random.Random(11)
    texts = ["".join(rng.choice(FUZZ_ALPHABET) for _ in range(rng.randrange(0, 60))).replace("\n", " ")
             .replace("\r", " ") for _ in range(4000)]
    path = tmp_path / "fuzz.txt"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8", errors="surrogatepass")
    read = [t for batch in iter_line_batches(str(path)) for t in batch]
    assert read == list(iter_lines(str(path)))
    assert _chunk_counts(path, tokenizer, *ngram_range) == _regex_counts(read, tokenizer, *ngram_range)


def test_counting_survives_hash_collisions(tmp_path, glue, monkeypatch):
    texts = [r[0] for r in read_tsv(glue / "SST-2" / "train.tsv")[:500]]
    path = tmp_path / "c.txt"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    # every token hashes alike: the check against each group's first token sends batches to the regex path
    monkeypatch.setattr(ngram_kernels, "_spans_hashes", lambda cps, a, b, seed: np.zeros(len(a), np.uint64))
    assert ngram_kernels.growing_token_ids(texts, 0, True, ngram_kernels.char_classes(JOINER),
                                           ngram_table.TokenIndex()) is None
    assert _chunk_counts(path, "default", 1, 3) == _regex_counts(texts, "default", 1, 3)


def test_counter_grows_and_prunes_exactly():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 50, size=20000)
    lines = np.repeat(np.arange(2000), 10)
    counter = ngram_kernels.NgramCounter(2)
    counter.add(ids, lines, 1, 4)
    counter.add(ids[:5000], lines[:5000], 1, 4)
    expected = {}
    for seq in (ids, ids[:5000]):
        for n in range(1, 5):
            for s in range(len(seq) - n + 1):
                if s // 10 == (s + n - 1) // 10:
                    key = tuple(seq[s:s + n])
                    expected[key] = expected.get(key, 0) + 1
    rows, counts = counter.rows_and_counts()
    got = {tuple(i for i in r if i != int(NONE)): c for r, c in zip(unpack(rows).tolist(), counts.tolist())}
    assert got == expected and len(counter) == len(expected)
    counter.prune(3)
    rows, counts = counter.rows_and_counts()
    got = {tuple(i for i in r if i != int(NONE)): c for r, c in zip(unpack(rows).tolist(), counts.tolist())}
    assert got == {k: c for k, c in expected.items() if c >= 3}
    counter.add(ids[:10], lines[:10], 1, 1)  # counting goes on after a prune
    assert counter.rows_and_counts()[1].sum() == sum(c for c in expected.values() if c >= 3) + 10


def test_line_batches_follow_the_line_rules(tmp_path):
    data = b"\xef\xbb\xbffirst\r\n\nbad \xff\xfe bytes\nlone\rcr\nx<br />y\n" + b"plain line\n" * 300 + b"last"
    path = write_bytes(tmp_path / "x.txt", data)
    offsets = find_offsets(path, 4)
    for size in (1, 64, 1 << 20):
        report, whole = DecodeReport(), list(iter_lines(path))
        assert [t for b in iter_line_batches(path, report=report, batch_bytes=size) for t in b] == whole
        assert report.num_lines == len(whole) and report.bad_lines == [2]
        chunks = [t for a, b in zip(offsets[:-1], offsets[1:]) for batch in iter_line_batches(path, a, b,
                  batch_bytes=size) for t in batch]
        assert chunks == whole


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
    theirs = set(cv.vocabulary_)
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
    fileio.prepare_work_dir(parts, {
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


def test_empty_vocabularies_are_refused(tmp_path):
    empty = write_bytes(tmp_path / "empty.txt", b"")
    with pytest.raises(ValueError, match="no n-grams in .*empty.txt"):
        build_vocab([empty], 100, (1, 2))
    src = write_bytes(tmp_path / "c.txt", b"good movie\nbad movie\n")
    with pytest.raises(ValueError, match=r"c.txt survived pruning: --max-ngrams-in-memory 1 is too small"):
        build_vocab([src], 100, (1, 2), max_in_memory=1)
    proc = run(["distill-ngram-dict", "--input", src, "--output", tmp_path / "v.txt",
                "--max-ngrams-in-memory", "1"], check=False)
    assert proc.returncode == 2 and "c.txt survived pruning" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["c.txt", "empty.txt"]  # no vocabulary, no lock dir
    # an empty vocabulary made otherwise (by hand, or by an older version) is refused too
    NgramVocab([]).save(str(tmp_path / "v0.txt"))
    with pytest.raises(ValueError, match="vocabulary .*v0.txt is empty"):
        extract_ngrams(str(tmp_path / "v0.txt"), src, str(tmp_path / "out.txt"))
    assert not (tmp_path / "out.txt").exists()


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def temp_files(*dirs):
    return sorted(os.path.join(d, n) for d in map(str, dirs) if os.path.isdir(d)
                  for n in os.listdir(d) if ".tmp" in n)


def test_rerun_removes_temporary_files_of_dead_runs(tmp_path):
    vocab_path, _ = _vocab(tmp_path)
    src = tmp_path / "in.txt"
    src.write_text("good movie\n" * 20)
    out = tmp_path / "out.txt"
    parts = tmp_path / "out.txt.parts"
    parts.mkdir()
    dead, live = dead_pid(), os.getppid()
    stale = [tmp_path / f".out.txt.{dead}.k2j4h_x9.tmp", parts / f".part-00000.{dead}.a1b2c3d4.tmp"]
    kept = [tmp_path / f".out.txt.{live}.q8w7e6r5.tmp",  # a live writer's
            tmp_path / f".other.txt.{dead}.z9y8x7w6.tmp"]  # another output's
    for p in stale + kept:
        p.write_text("x" * 1000)
    extract_ngrams(vocab_path, str(src), str(out))
    assert out.read_text() == f"good movie good{JOINER}movie\n" * 20
    assert temp_files(tmp_path) == sorted(map(str, kept)) and not parts.exists()
    # the vocabulary's two files, likewise
    for name in ("v.txt", "v.txt.json"):
        (tmp_path / f".{name}.{dead}.k2j4h_x9.tmp").write_text("x")
    write_vocab([str(src)], str(tmp_path / "v.txt"), 10, (1, 2))
    assert temp_files(tmp_path) == sorted(map(str, kept))
    assert not (tmp_path / "v.txt.parts").exists()


def test_a_second_run_is_refused_naming_the_first(tmp_path):
    vocab_path, _ = _vocab(tmp_path)
    src = tmp_path / "in.txt"
    src.write_text("good movie\n" * 20)
    out, vocab2 = tmp_path / "out.txt", tmp_path / "v2.txt"
    with fileio.locked(str(out) + ".parts"), fileio.locked(str(vocab2) + ".parts"):
        proc = run(["distill-extract-ngrams", "--vocab", vocab_path, "--input", src, "--output", out],
                   check=False)
        assert proc.returncode == 2 and f"in use by process {os.getpid()}" in proc.stderr, proc.stderr[-500:]
        with pytest.raises(fileio.WorkDirLocked, match=f"in use by process {os.getpid()}"):
            write_vocab([str(src)], str(vocab2), 10, (1, 2))
        assert not out.exists() and not vocab2.exists()
        # the holder's directories are left alone
        assert os.path.isdir(str(out) + ".parts") and os.path.isdir(str(vocab2) + ".parts")
    assert extract_ngrams(vocab_path, str(src), str(out)) == 20
    write_vocab([str(src)], str(vocab2), 10, (1, 2))
    assert not os.path.exists(str(vocab2) + ".parts")


def test_extraction_survives_kill_9_at_random_points(tmp_path, glue):
    rows = read_tsv(glue / "SST-2" / "train.tsv")
    corpus = tmp_path / "train.txt"
    corpus.write_text("".join(r[0] + "\n" for r in rows), encoding="utf-8")
    vocab = build_vocab([str(corpus)], 20000, (1, 4))
    vocab.save(str(tmp_path / "v.txt"))
    src = corpus
    clean = tmp_path / "clean.ng"
    start = time.monotonic()
    extract_ngrams(str(tmp_path / "v.txt"), str(src), str(clean))
    work = time.monotonic() - start
    out_dir = tmp_path / "out"
    out = out_dir / "train.ng"
    parts = out_dir / "train.ng.parts"
    cmd = [BIN / "distill-extract-ngrams", "--vocab", tmp_path / "v.txt", "--input", src, "--output", out,
           "--workers", "2"]

    def holder():
        try:
            return int((parts / ".lock").read_text())
        except (OSError, ValueError):
            return None

    def wait_for(cond, proc, timeout=120):
        end = time.monotonic() + timeout
        while not cond() and proc.poll() is None:
            assert time.monotonic() < end, "the run never got going"
            time.sleep(0.001)

    rng = random.Random(0)
    leftovers, any_left = [], False
    # in the chunks (forked workers), during the final concatenation, anywhere
    for kill_at in ("chunks", "concatenation", "anywhere"):
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # the rerun holds the job and has cleared what the killed run left
            wait_for(lambda: holder() == proc.pid and not set(leftovers) & set(temp_files(out_dir, parts)), proc)
            if kill_at == "concatenation":
                wait_for(lambda: any(n.startswith(".train.ng.") for n in os.listdir(out_dir)), proc)
            else:
                time.sleep(rng.uniform(0, work * (0.5 if kill_at == "chunks" else 1.2)))
            proc.kill()
        finally:
            stderr = proc.communicate()[1].decode(errors="replace")
        assert proc.returncode in (0, -9), stderr[-2000:]
        assert "in use by process" not in stderr  # workers died with their parent
        leftovers = temp_files(out_dir, parts)
        any_left |= bool(leftovers)
    assert any_left  # some kill did leave temporary files behind
    run(cmd)
    assert out.read_bytes() == clean.read_bytes()
    assert os.listdir(out_dir) == ["train.ng"]  # no temporary file, no parts
