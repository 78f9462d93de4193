"""HTML line-break tags (IMDB's paragraph marks) read as spaces by every text tool."""

from pathlib import Path

from user_dir.encoders.wordpiece import WordPieceBPE, WordPieceConfig
from user_dir.preprocess.bpe_files import encode_file
from user_dir.preprocess.ngrams import get_tokenizer
from user_dir.preprocess.text_io import DecodeReport, clean_text, iter_lines

IMDB = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imdb"


def test_every_spelling_of_the_tag_is_one_space():
    assert clean_text("a<br />b") == "a b"
    assert clean_text("a<br/>b<BR>c<Br  / >d") == "a b c d"
    assert clean_text("end.<br /><br />Start") == "end.  Start"
    # other tags and look-alikes are text
    assert clean_text("<b>bold</b> <bra> 3 < 4") == "<b>bold</b> <bra> 3 < 4"
    assert clean_text("no tags") == "no tags"


def test_file_lines_lose_the_tags_and_keep_their_count(tmp_path):
    huge = "great film<br /><br />" * 20000  # one review as one 440 kB line
    path = tmp_path / "reviews.txt"
    path.write_bytes(b"\xef\xbb\xbfbad\xff byte<br />here\n" + huge.encode() + b"\nlast<BR>")
    report = DecodeReport()
    lines = list(iter_lines(str(path), report=report))
    assert len(lines) == 3 and report.bad_lines == [0]
    assert lines[0] == "bad\ufffd byte here"
    assert lines[1] == "great film  " * 20000
    assert lines[2] == "last "
    assert not any("<br" in x.lower() for x in lines)


def test_ngram_tokens_ignore_the_tags():
    tok = get_tokenizer("default")
    assert tok("A fine film.<br /><br />It's long") == tok("A fine film.  It's long")
    assert "br" not in tok("x<br/>y") and tok("x<br/>y") == ["x", "y"]


def test_wordpiece_on_strings_and_files_agrees(minilm, tmp_path):
    bpe = WordPieceBPE(WordPieceConfig(wordpiece_vocab=str(minilm / "tokenizer.json")))
    text = "One of the best.<br /><br />Watch it!"
    assert bpe.encode(text) == bpe.encode("One of the best.  Watch it!")
    assert "br" not in bpe.encode(text).split()
    src = tmp_path / "in.txt"
    reviews = [line.split("\t")[0] for line in (IMDB / "test.tsv").read_text().split("\n")[1:200]]
    tagged = [r for r in reviews if "<br" in r][:20]
    assert tagged, "IMDB test holds reviews with line-break tags (train and unsup do not)"
    src.write_text("\n".join(tagged) + "\n")
    encode_file(bpe, str(src), str(tmp_path / "out.bpe"))
    out = (tmp_path / "out.bpe").read_text().splitlines()
    assert out == [bpe.encode(r) for r in tagged] == bpe.encode_batch(tagged)
    assert not any("br" in line.split() for line in out)
