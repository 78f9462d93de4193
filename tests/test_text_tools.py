"""What the text tools (n-grams, BPE, augmentation) share: path checks first, outputs with the umask's mode."""

import os
import stat

import pytest

from user_dir.cli import augment, bpe_encode, extract_ngrams, ngram_dict
from user_dir.preprocess.ngrams import build_vocab

from conftest import read_tsv, run

WORDPIECE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "film", "##s", "a", "the"]


@pytest.fixture
def files(tmp_path, glue):
    src = tmp_path / "in.txt"
    src.write_text("".join(r[0] + "\n" for r in read_tsv(glue / "SST-2" / "train.tsv")[:2000]), encoding="utf-8")
    (tmp_path / "vocab.txt").write_text("".join(w + "\n" for w in WORDPIECE))
    build_vocab([str(src)], 500, (1, 2)).save(str(tmp_path / "v.txt"))
    (tmp_path / "dir").mkdir()
    return tmp_path


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_follow_the_umask(files):
    t = files
    old = os.umask(0o027)  # inherited by the tools; neither 0600 nor the usual 0644
    try:
        run(["distill-ngram-dict", "--input", t / "in.txt", "--output", t / "o" / "v.txt", "--max-features", "300"])
        run(["distill-extract-ngrams", "--vocab", t / "o" / "v.txt", "--input", t / "in.txt",
             "--output", t / "o" / "in.ng", "--workers", "2"])
        run(["distill-bpe-encode", "--wordpiece-vocab", t / "vocab.txt", "--input", t / "in.txt",
             "--output", t / "o" / "in.wp"])
        run(["distill-bpe-encode", "--bpe", "sentencepiece", "--sentencepiece-model", t / "o" / "sp.model",
             "--sentencepiece-vocab-size", "200", "--input", t / "in.txt", "--output", t / "o" / "in.sp"])
        run(["distill-augment", "--input", t / "in.txt", "--output", t / "o" / "in.aug", "--samples-per-example",
             "1"])
    finally:
        os.umask(old)
    outputs = sorted(os.listdir(t / "o"))
    assert outputs == ["in.aug", "in.ng", "in.sp", "in.wp", "sp.model", "sp.vocab", "v.txt", "v.txt.json"]
    assert {n: oct(mode(t / "o" / n)) for n in outputs} == {n: oct(0o666 & ~0o027) for n in outputs}


def test_directories_are_named_before_any_work(files):
    t = files
    tools = [
        (ngram_dict.main, ["--max-features", "10"]),
        (extract_ngrams.main, ["--vocab", t / "v.txt"]),
        (bpe_encode.main, ["--wordpiece-vocab", t / "vocab.txt"]),
        (augment.main, ["--samples-per-example", "1"]),
    ]
    for main, flags in tools:
        args = [str(a) for a in flags]
        with pytest.raises(ValueError, match=f"input file {t / 'dir'} is a directory"):
            main(args + ["--input", str(t / "dir"), "--output", str(t / "out.txt")])
        with pytest.raises(ValueError, match=f"output {t / 'dir'} is a directory"):
            main(args + ["--input", str(t / "in.txt"), "--output", str(t / "dir")])
        with pytest.raises(FileNotFoundError, match="input file not found: .*missing.txt"):
            main(args + ["--input", str(t / "missing.txt"), "--output", str(t / "out.txt")])
    assert sorted(os.listdir(t)) == ["dir", "in.txt", "v.txt", "v.txt.json", "vocab.txt"]  # nothing done
    assert os.listdir(t / "dir") == []
    with pytest.raises(ValueError, match="SentencePiece model .*dir is a directory"):
        bpe_encode.main(["--bpe", "sentencepiece", "--sentencepiece-model", str(t / "dir"), "--input",
                         str(t / "in.txt"), "--output", str(t / "out.txt")])
    # the console tool says it and exits 2
    proc = run(["distill-bpe-encode", "--wordpiece-vocab", t / "vocab.txt", "--input", t / "dir",
                "--output", t / "out.txt"], check=False)
    assert proc.returncode == 2 and "is a directory: name a file" in proc.stderr
    assert "Traceback" not in proc.stderr
