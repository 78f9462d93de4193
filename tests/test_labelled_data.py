"""distill-prepare-data: the user's labelled files as the pipeline's files, bad rows refused by file and line."""

import json

import pytest

from conftest import REPO, read_tsv, run
from user_dir.cli.prepare_data import main as prepare_main
from user_dir.preprocess.labelled_data import class_order, prepare_data


def write(path, text, mode="w"):
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def test_sst2_tsv_gives_what_cut_gives(tmp_path, glue):
    """On real GLUE files the text and label files are those of `tail -n +2 | cut -f1/-f2`."""
    out = tmp_path / "out"
    summary = prepare_data(str(out), str(glue / "SST-2" / "train.tsv"), str(glue / "SST-2" / "dev.tsv"),
                           header=True)
    for split, name in (("train", "train.tsv"), ("dev", "dev.tsv")):
        rows = read_tsv(glue / "SST-2" / name)
        assert (out / f"{split}.txt").read_text(encoding="utf-8") == "".join(r[0] + "\n" for r in rows)
        assert (out / f"{split}.label").read_text() == "".join(r[1] + "\n" for r in rows)
        assert read_tsv(out / f"{split}.tsv") == [r[:2] for r in rows]
        counts = {c: sum(r[1] == c for r in rows) for c in ("0", "1")}
        assert summary["splits"][split]["rows"] == len(rows) and summary["splits"][split]["per_class"] == counts
    assert summary["classes"] == ["0", "1"]
    # the label dictionary is the template the demos used, byte for byte
    assert (out / "label.dict.txt").read_bytes() == (REPO / "data-bin-templates" / "sst2-binary" / "label"
                                                    / "dict.txt").read_bytes()
    assert json.loads((out / "data.json").read_text()) == summary
    assert not (out / "unlabelled.txt").exists() and "test" not in summary["splits"]


def test_text_files_string_labels_and_unlabelled(tmp_path):
    train = write(tmp_path / "a.txt", "\ufeffgood film\nbad\tfilm\nso so<br />film\r\nfine\n")
    train_y = write(tmp_path / "a.label", "pos\nneg\nneutral \npos\n")
    dev = write(tmp_path / "b.txt", "great\nawful")  # no final newline
    dev_y = write(tmp_path / "b.label", "pos\nneg\n")
    unl = write(tmp_path / "u.txt", b"first review\nbad byte \xff here\n", "wb")
    out = tmp_path / "out"
    summary = prepare_data(str(out), train, dev, None, [unl], fmt="text",
                           labels={"train": train_y, "dev": dev_y})
    assert summary["classes"] == ["neg", "neutral", "pos"]  # sorted names
    assert (out / "train.txt").read_text() == "good film\nbad film\nso so film\nfine\n"  # BOM, tab, <br />, \r
    assert (out / "train.label").read_text() == "pos\nneg\nneutral\npos\n"
    assert (out / "dev.txt").read_text() == "great\nawful\n"
    assert (out / "unlabelled.txt").read_text() == "first review\nbad byte \ufffd here\n"
    assert summary["unlabelled"] == [{"file": unl, "rows": 2}]
    assert summary["splits"]["train"]["per_class"] == {"neg": 1, "neutral": 1, "pos": 2}
    assert (out / "label.dict.txt").read_text() == "neg 0\nneutral 0\npos 0\n"
    assert read_tsv(out / "train.tsv")[2] == ["so so film", "neutral"]


def test_class_order():
    assert class_order(["10", "2", "0", "2"]) == ["0", "2", "10"]  # integers as numbers
    assert class_order(["b", "a", "10"]) == ["10", "a", "b"]
    assert class_order(["a", "b"], ["b", "a", "c"]) == ["b", "a", "c"]
    with pytest.raises(ValueError, match="at least two classes"):
        class_order(["a", "a"])
    with pytest.raises(ValueError, match="names 'a' twice"):
        class_order(["a", "b"], ["a", "a"])
    with pytest.raises(ValueError, match="not a usable label"):
        class_order(["a"], ["a", "b c"])


@pytest.mark.parametrize("train, dev, message", [
    ("t\tlabel\nfine\t1\n\t0\n  \t1\n", "t\tlabel\nok\t1\n", r"train.tsv: lines 3, 4: empty text"),
    ("t\tlabel\nfine\t1\nbad\t\n", "t\tlabel\nok\t1\n", r"train.tsv: line 3: no label"),
    ("t\tlabel\nfine\t1\nbad\n", "t\tlabel\nok\t1\n", r"train.tsv: line 3: fewer than 2 tab-separated columns"),
    ("t\tlabel\nfine\t1\nbad\tvery bad\n", "t\tlabel\nok\t1\n", r"train.tsv: line 3: a label with whitespace"),
    ("t\tlabel\nfine\t1\nbad\t<unk>\n", "t\tlabel\nok\t1\n", r"train.tsv: line 3: a label named like a fairseq"),
    ("t\tlabel\nfine\t1\nbad\t0\n", "t\tlabel\nok\t1\nhm\t2\nhm\t2\n",
     r"dev.tsv: lines 3, 4: label '2' is not a class of the training labels of .*train.tsv \(0, 1\)"),
    ("t\tlabel\nfine\t1\nbad\t1\n", "t\tlabel\nok\t1\n", r"at least two classes"),
    ("t\tlabel\n", "t\tlabel\nok\t1\n", r"train.tsv: no training example"),
])
def test_bad_rows_are_refused_with_file_and_line(tmp_path, train, dev, message):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        prepare_data(str(out), write(tmp_path / "train.tsv", train), write(tmp_path / "dev.tsv", dev), header=True)
    assert not out.exists()  # nothing written before every check passed


def test_text_format_mismatches_are_refused(tmp_path):
    train, dev = write(tmp_path / "a.txt", "x\ny\nz\n"), write(tmp_path / "b.txt", "w\n")
    y3, y2, dev_y = write(tmp_path / "a3", "0\n1\n0\n"), write(tmp_path / "a2", "0\n1\n"), write(tmp_path / "d", "1\n")
    with pytest.raises(ValueError, match=r"a.txt has 3 examples but .*a2 has 2 labels"):
        prepare_data(str(tmp_path / "o"), train, dev, fmt="text", labels={"train": y2, "dev": dev_y})
    with pytest.raises(ValueError, match="needs its labels file"):
        prepare_data(str(tmp_path / "o"), train, dev, fmt="text", labels={"train": y3})
    with pytest.raises(ValueError, match="--header is for TSV"):
        prepare_data(str(tmp_path / "o"), train, dev, fmt="text", header=True, labels={"train": y3, "dev": dev_y})
    unl = write(tmp_path / "u.txt", "fine\n\nfine\n")
    with pytest.raises(ValueError, match=r"u.txt: line 2: empty text"):
        prepare_data(str(tmp_path / "o"), train, dev, None, [unl], fmt="text", labels={"train": y3, "dev": dev_y})
    with pytest.raises(ValueError, match=r"a3: line 2: label '1' is not a class of --classes \(0, 2\)"):
        prepare_data(str(tmp_path / "o"), train, dev, fmt="text", labels={"train": y3, "dev": dev_y},
                     classes=["0", "2"])
    with pytest.raises(ValueError, match=r"d2: line 1: label '2' is not a class of the training labels"):
        prepare_data(str(tmp_path / "o"), train, dev, fmt="text",
                     labels={"train": y3, "dev": write(tmp_path / "d2", "2\n")})


def test_the_console_tool(tmp_path):
    """--check prints the summary and writes nothing; a bad file is exit code 2 with its message."""
    train = write(tmp_path / "train.tsv", "id\ttext\tlabel\n1\tgood\tpos\n2\tbad\tneg\n")
    dev = write(tmp_path / "dev.tsv", "id\ttext\tlabel\n3\tok\tpos\n")
    proc = run(["distill-prepare-data", "--train", train, "--dev", dev, "--header", "--text-column", "1",
                "--label-column", "2", "--classes", "pos,neg", "--check"], cwd=tmp_path)
    summary = json.loads(proc.stdout)
    assert summary["classes"] == ["pos", "neg"] and summary["splits"]["dev"]["per_class"] == {"pos": 1, "neg": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.tsv", "train.tsv"]
    assert prepare_main(["--train", train, "--dev", dev, "--header", "--text-column", "1", "--label-column", "2",
                         "--output-dir", str(tmp_path / "out")]) == json.loads((tmp_path / "out" / "data.json").read_text())
    write(tmp_path / "dev.tsv", "id\ttext\tlabel\n3\tok\tmeh\n")
    proc = run(["distill-prepare-data", "--train", train, "--dev", dev, "--header", "--text-column", "1",
                "--label-column", "2", "--output-dir", str(tmp_path / "o2")], check=False)
    assert proc.returncode == 2 and "dev.tsv: line 2: label 'meh' is not a class" in proc.stderr
