"""Head + tail truncation: the fine-tuning files (distill-bpe-encode) and the Teacher cut the same tokens."""

import numpy as np
import pytest
import torch

from user_dir.inference.teacher import Teacher
from user_dir.preprocess.teacher_logits import teacher_logits_file
from user_dir.preprocess.truncation import check_window, head_tail

from conftest import DATA, read_tsv, run


def test_head_tail_against_explicit_positions():
    for n in range(0, 14):
        seq = list(range(100, 100 + n))
        for limit in range(1, 8):
            for head in [None, *range(0, limit + 1)]:
                got = head_tail(seq, limit, head)
                h = limit if head is None else head
                # brute force: the positions kept, one by one
                want = seq if n <= limit else [seq[i] for i in range(n) if i < h or i >= n - (limit - h)]
                assert got == want and len(got) == min(n, limit)
                assert head_tail(torch.tensor(seq, dtype=torch.long), limit, head).tolist() == want
                assert head_tail("".join(chr(65 + i % 26) for i in range(n)), limit, head) == \
                    "".join(chr(65 + (i - 100) % 26) for i in want)


def test_window_refusals():
    with pytest.raises(ValueError, match="--keep-head needs"):
        check_window(None, 3)
    with pytest.raises(ValueError, match="between 0 and"):
        check_window(10, 11)
    with pytest.raises(ValueError, match="positive"):
        check_window(0, None)


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """IMDB test reviews, long ones and ones with <br /> tags among them."""
    rows = read_tsv(DATA / "imdb" / "test.tsv")[:40]
    path = tmp_path_factory.mktemp("reviews") / "reviews.txt"
    path.write_text("".join(r[0] + "\n" for r in rows) + "short one\n\n", encoding="utf-8")
    return path, [r[0] for r in rows] + ["short one", ""]


@pytest.mark.parametrize("keep_head", [None, 0, 9, 30])
def test_bpe_encode_cut_equals_the_teachers(finetuned_teacher, reviews, tmp_path, keep_head):
    path, texts = reviews
    ckpt = finetuned_teacher["dir"]
    teacher = Teacher(str(ckpt), max_positions=32, keep_head=keep_head)
    vocab = teacher.cfg.bpe.wordpiece_vocab
    out = tmp_path / "cut.bpe"
    args = ["distill-bpe-encode", "--wordpiece-vocab", vocab, "--input", path, "--output", out,
            "--max-tokens", "30"]
    run(args + ([] if keep_head is None else ["--keep-head", str(keep_head)]))
    lines = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == len(texts)
    d = teacher.task.source_dictionary
    long = 0
    for text, line in zip(texts, lines):
        # fine-tuning's ids: fairseq-preprocess's (tokens + </s>) after sentence_prediction's <s>
        ids = torch.cat([torch.tensor([0]), d.encode_line(line, append_eos=True, add_if_not_exist=False).long()])
        assert torch.equal(teacher.encode(text), ids)
        full = teacher.encode_full(text)
        long += len(full) > 32
        if len(full) > 32 and keep_head is not None:  # the review's last tokens and </s> are kept
            tail = 30 - keep_head + 1
            assert torch.equal(ids[-tail:], full[-tail:]) and torch.equal(ids[:1 + keep_head], full[:1 + keep_head])
    assert long >= 30  # most reviews are longer than the window


def test_teacher_logits_tool_reads_the_window(finetuned_teacher, reviews, tmp_path):
    path, texts = reviews
    ckpt = str(finetuned_teacher["dir"])
    result = teacher_logits_file(ckpt, str(path), str(tmp_path / "w.npy"), max_positions=32, keep_head=9)
    got = np.load(tmp_path / "w.npy")
    want = Teacher(ckpt, max_positions=32, keep_head=9).logits(texts)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert result["truncated"] >= 30
    head_only = Teacher(ckpt, max_positions=32).logits(texts)
    assert np.abs(head_only - want).max() > 1e-3  # another window, other logits
    run(["distill-teacher-logits", "--checkpoint-dir", ckpt, "--input", path, "--output", tmp_path / "c.npy",
         "--max-positions", "32", "--keep-head", "9", "--device", "cpu"])
    np.testing.assert_allclose(np.load(tmp_path / "c.npy"), got, atol=1e-5)


def test_teacher_window_refusals(finetuned_teacher):
    ckpt = str(finetuned_teacher["dir"])
    with pytest.raises(ValueError, match="max_positions must be 3 to"):
        Teacher(ckpt, max_positions=100000)
    with pytest.raises(ValueError, match="between 0 and the window"):
        Teacher(ckpt, max_positions=32, keep_head=31)
