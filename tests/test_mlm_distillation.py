"""Masked-LM distillation's parts: document chunks, DistilBERT's smoothed target draw.

Checked against hand computations and, for the draw, against its expected
frequencies over many draws.
"""

import json
import math
import re

import numpy as np
import pytest
import torch

from user_dir.data.mlm_targets import DocumentChunks, SmoothedMaskDataset, smoothed_probabilities, token_counts

BOS, PAD, EOS, MASK = 0, 1, 2, 3
SPECIAL = (BOS, PAD, EOS, MASK)


def docs(*lengths, start=10):
    """Documents of these lengths (their </s> included), token ids counting up from ``start``."""
    out, t = [], start
    for n in lengths:
        out.append(torch.tensor(list(range(t, t + n - 1)) + [EOS]))
        t += n - 1
    return out


def test_document_chunks_cut_long_documents_and_drop_short_pieces():
    d = docs(11, 3, 6)  # 10, 2 and 5 tokens before </s>
    chunks = DocumentChunks(d, np.array([len(x) for x in d]), max_tokens=6, min_tokens=4, bos=BOS, eos=EOS)
    # bodies of at most 4 tokens: 10 -> 4 + 4 + 2; 2 -> 2; 5 -> 4 + 1 (dropped: 3 tokens < 4)
    want = [[10, 11, 12, 13], [14, 15, 16, 17], [18, 19], [20, 21], [22, 23, 24, 25]]
    assert [chunks[i].tolist() for i in range(len(chunks))] == [[BOS] + w + [EOS] for w in want]
    assert chunks.sizes.tolist() == [len(w) + 2 for w in want]
    with pytest.raises(ValueError, match="room for"):
        DocumentChunks(d, np.array([11, 3, 6]), max_tokens=2, min_tokens=1, bos=BOS, eos=EOS)


def test_token_counts_and_smoothed_probabilities_by_hand():
    d = [torch.tensor([4, 4, 4, 5, EOS]), torch.tensor([5, 6, EOS])]
    counts = token_counts(d, 8)
    assert counts.tolist() == [0, 0, 2, 0, 3, 2, 1, 0]
    p = smoothed_probabilities(counts, 0.7, SPECIAL)
    raw = np.array([0, 0, 0, 0, 3 ** -0.7, 2 ** -0.7, 1.0, 1.0])  # unseen 7 counts as 1
    np.testing.assert_allclose(p, raw / raw.sum())
    with pytest.raises(ValueError, match="past the dictionary"):
        token_counts([torch.tensor([9])], 8)


def test_smoothed_draw_frequencies_and_the_80_10_10_split():
    vocab = 12
    counts = np.array([0, 0, 0, 0, 1000, 100, 10, 1, 1, 1, 1, 1])
    probs = smoothed_probabilities(counts, 0.7, SPECIAL)
    seq = torch.tensor([BOS, 4, 5, 6, 7, 4, 5, 6, 7, 8, 9, 10, 11, EOS, PAD, PAD])
    n_real = 12
    src, tgt = SmoothedMaskDataset.apply_mask([seq], token_probs=probs, mask_idx=MASK, pad_idx=PAD, seed=3)
    chosen = np.zeros(len(seq))
    actions = {"mask": 0, "keep": 0, "random": 0}
    draws = 3000
    for epoch in range(1, draws + 1):
        src.set_epoch(epoch), tgt.set_epoch(epoch)
        s, t = src[0], tgt[0]
        picked = t.ne(PAD)
        assert int(picked.sum()) == math.ceil(0.15 * n_real)  # 2 targets
        assert not picked[[0, 13, 14, 15]].any()  # never <s>, </s> or padding
        assert torch.equal(t[picked], seq[picked]) and torch.equal(s[~picked], seq[~picked])
        chosen += picked.numpy()
        for i in torch.nonzero(picked).view(-1).tolist():
            actions["mask" if s[i] == MASK else "keep" if s[i] == seq[i] else "random"] += 1
        assert (s[picked] != PAD).all() and not (s[picked] == BOS).any()
    n = sum(actions.values())
    # a random replacement can hit the original token (1 in 8 real tokens): counted as kept
    assert abs(actions["mask"] / n - 0.8) < 0.03
    assert abs(actions["random"] / n - 0.1 * 7 / 8) < 0.02 and abs(actions["keep"] / n - 0.1 - 0.1 / 8) < 0.02
    # each position's chance of being one of the 2 targets, drawn without replacement by weight:
    # P(i) = w_i / W + sum_{j != i} (w_j / W) * w_i / (W - w_j)
    w = probs[seq.numpy()] * (seq.numpy() < vocab)
    W = w.sum()
    expected = np.array([w[i] / W + sum(w[j] / W * w[i] / (W - w[j]) for j in range(len(w)) if j != i and w[j])
                         for i in range(len(w))])
    np.testing.assert_allclose(chosen / draws, expected, atol=0.03)
    assert expected[1] < expected[2] < expected[3] < expected[4]  # rarer tokens, more often targets
    # the same (seed, epoch, index) draws the same; another seed draws otherwise
    again, _ = SmoothedMaskDataset.apply_mask([seq], token_probs=probs, mask_idx=MASK, pad_idx=PAD, seed=3)
    other, _ = SmoothedMaskDataset.apply_mask([seq], token_probs=probs, mask_idx=MASK, pad_idx=PAD, seed=4)
    differ = 0
    for epoch in range(1, 21):
        for d in (src, again, other):
            d.set_epoch(epoch)
        assert torch.equal(src[0], again[0])
        differ += not torch.equal(src[0], other[0])
    assert differ > 10


class FixedLM(torch.nn.Module):
    """Returns fixed token logits [B, T, V] and a last hidden state [B, T, D]."""

    def __init__(self, logits, hidden):
        super().__init__()
        self.logits, self.hidden = logits, hidden

    def forward(self, tokens, features_only=False, return_all_hiddens=False, masked_tokens=None):
        logits = self.logits if masked_tokens is None else self.logits[masked_tokens]  # as RoBERTa's LM head
        return logits, {"inner_states": [None, self.hidden.transpose(0, 1)]}


def lm_task(teacher_logits, teacher_hidden, dim=4):
    from types import SimpleNamespace

    def teacher(tokens, positions=None):
        return (teacher_logits if positions is None else teacher_logits[positions]), teacher_hidden

    teacher.shape = {"dim": dim}
    return SimpleNamespace(load_teacher=lambda: teacher, source_dictionary=SimpleNamespace(pad=lambda: PAD),
                           student_shape={"dim": dim})


def test_composite_loss_against_a_hand_computation():
    from user_dir.criterions.composite_distillation import CompositeDistillationConfig, CompositeDistillationCriterion

    g = torch.Generator().manual_seed(0)
    B, T, V, D = 2, 5, 7, 4
    tokens = torch.tensor([[BOS, 5, MASK, 6, EOS], [BOS, MASK, 4, EOS, PAD]])
    target = torch.full((B, T), PAD)
    target[0, 2], target[1, 1], target[0, 3] = 5, 6, 6  # three targets (one kept as it was)
    s, t = torch.randn(B, T, V, generator=g), torch.randn(B, T, V, generator=g)
    hs, ht = torch.randn(B, T, D, generator=g), torch.randn(B, T, D, generator=g)
    sample = {"net_input": {"src_tokens": tokens}, "target": target, "ntokens": 9}
    for restrict in (False, True):
        cfg = CompositeDistillationConfig(alpha_ce=5.0, alpha_mlm=2.0, alpha_mse=0.5, alpha_cos=1.0,
                                          temperature=2.0, restrict_ce_to_mask=restrict)
        crit = CompositeDistillationCriterion(cfg, lm_task(t, ht))
        loss, size, log = crit(FixedLM(s, hs), sample)
        sel = [(b, i) for b in range(B) for i in range(T) if (target[b, i] != PAD if restrict else tokens[b, i] != PAD)]
        real = [(b, i) for b in range(B) for i in range(T) if tokens[b, i] != PAD]
        masked = [(b, i) for b in range(B) for i in range(T) if target[b, i] != PAD]

        def kl(b, i):
            p, q = torch.softmax(t[b, i] / 2, -1), torch.softmax(s[b, i] / 2, -1)
            return 4.0 * float((p * (p.log() - q.log())).sum())

        want_kl = sum(kl(b, i) for b, i in sel) / len(sel)
        want_mse = sum(float(((s[b, i] - t[b, i]) ** 2).sum()) for b, i in sel) / len(sel)
        want_mlm = sum(-float(torch.log_softmax(s[b, i], -1)[target[b, i]]) for b, i in masked) / len(masked)
        want_cos = sum(1 - float(torch.nn.functional.cosine_similarity(hs[b, i], ht[b, i], dim=0))
                       for b, i in real) / len(real)
        want = 5 * want_kl + 2 * want_mlm + 0.5 * want_mse + 1 * want_cos
        assert size == B and float(loss) / B == pytest.approx(want, rel=1e-5)
        assert float(log["kd_loss"]) / B == pytest.approx(want_kl, rel=1e-5)
        assert float(log["cos_loss"]) / B == pytest.approx(want_cos, rel=1e-5)
        assert log["ntargets"] == 3
        assert int(log["ncorrect"]) == sum(int(s[b, i].argmax() == target[b, i]) for b, i in masked)
        assert int(log["teacher_ncorrect"]) == sum(int(t[b, i].argmax() == target[b, i]) for b, i in masked)


def test_composite_refusals():
    from user_dir.criterions.composite_distillation import CompositeDistillationConfig, CompositeDistillationCriterion

    t = lm_task(None, None, dim=8)
    with pytest.raises(ValueError, match="causal-LM"):
        CompositeDistillationCriterion(CompositeDistillationConfig(alpha_clm=1.0), t)
    with pytest.raises(ValueError, match="width is 4, the teacher's 8"):
        t.student_shape = {"dim": 4}
        CompositeDistillationCriterion(CompositeDistillationConfig(), t)
    from types import SimpleNamespace

    with pytest.raises(ValueError, match="--teacher-checkpoint"):
        CompositeDistillationCriterion(CompositeDistillationConfig(), SimpleNamespace(load_teacher=lambda: None))
    CompositeDistillationCriterion(CompositeDistillationConfig(alpha_ce=0, alpha_cos=0),
                                   SimpleNamespace(load_teacher=lambda: None))  # MLM alone needs no teacher


def test_extracting_every_layer_keeps_the_masked_lm_logits():
    from test_layerwise import tiny_model, tokens

    from user_dir.compress.prune import prune

    model = tiny_model()
    assert model.encoder.lm_head is not None
    tok = tokens()
    before = model(tok, features_only=False)[0].detach()
    prune(model, layers=[0, 1, 2])
    torch.testing.assert_close(model(tok, features_only=False)[0].detach(), before, atol=0, rtol=0)
    prune(model, layers=[0, 2])
    assert len(model.encoder.sentence_encoder.layers) == 2 and model.encoder.lm_head is not None


def test_masked_lm_distillation_through_fairseq_train(imported_teacher, tmp_path):
    """A 3-layer extraction of MiniLM distilled on IMDB reviews; exported, transformers computes the same."""
    from conftest import DATA, REPO, run

    reviews = (DATA / "imdb" / "unsup.txt").read_text(encoding="utf-8").splitlines()
    for name, rows in (("train", reviews[:24]), ("valid", reviews[24:30])):
        (tmp_path / f"{name}.txt").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
        run(["distill-bpe-encode", "--wordpiece-vocab", imported_teacher / "tokenizer.json",
             "--input", tmp_path / f"{name}.txt", "--output", tmp_path / f"{name}.bpe"])
    data = tmp_path / "data"
    run(["fairseq-preprocess", "--only-source", "--srcdict", imported_teacher / "dict.txt", "--trainpref",
         tmp_path / "train.bpe", "--validpref", tmp_path / "valid.bpe", "--destdir", data])
    out = run(["distill-extract-student", "--checkpoint", imported_teacher / "model.pt", "--layers", "0,2,4",
               "--output", tmp_path / "student"])
    assert json.loads(out.stdout.strip().splitlines()[-1])["shapes"]["encoder_layers"] == 3
    flags = (tmp_path / "student" / "model-args.txt").read_text().split()
    proc = run(["fairseq-train", data, "--user-dir", REPO / "user_dir", "--task", "masked_lm_distillation",
                "--tokens-per-sample", "64", *flags, "--finetune-from-model", tmp_path / "student" / "model.pt",
                "--teacher-checkpoint", imported_teacher / "model.pt", "--criterion", "composite_distillation",
                "--alpha-mse", "0.1", "--optimizer", "adam", "--lr", "1e-4", "--batch-size", "8", "--max-update", "3",
                "--save-dir", tmp_path / "save", "--num-workers", "0", "--log-format", "simple",
                "--log-interval", "1", "--no-epoch-checkpoints", "--tensorboard-logdir", tmp_path / "tb"])
    log = proc.stdout + proc.stderr
    terms = ("kd_loss", "mlm_loss", "mse_loss", "cos_loss", "mlm_accuracy", "teacher_mlm_accuracy")
    for term in terms:
        assert re.search(rf"\b{term}[= ]\d", log), term
    # TensorBoard has each term of every update, the same numbers as the log
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb" / "train_inner")).Reload()
    for term in terms:
        steps = [e.step for e in events.Scalars(term)]
        assert steps == [1, 2, 3], term
    last = re.findall(r"train_inner.*?\bkd_loss=([\d.]+)", log)[-1]
    assert events.Scalars("kd_loss")[-1].value == pytest.approx(float(last), abs=1e-4)
    # the token counts, cached once, are the training split's
    counts = np.load(data / "train.token_counts.npy")
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(str(data / "dict.txt"))
    split = data_utils.load_indexed_dataset(str(data / "train"), d)
    assert counts.sum() == sum(len(split[i]) for i in range(len(split)))
    assert counts[d.index("the")] == sum(int((split[i] == d.index("the")).sum()) for i in range(len(split)))

    # Hugging Face's AutoModelForMaskedLM computes what the fairseq student computes
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from user_dir.compress.encoder_checkpoint import load_encoder

    run(["distill-export-hf", "--checkpoint", tmp_path / "save" / "checkpoint_last.pt", "--data-bin", data,
         "--output", tmp_path / "hf"])
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf = AutoModelForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    enc = tok(reviews[30:33], padding=True, truncation=True, max_length=48, return_tensors="pt")
    student, _, _ = load_encoder(str(tmp_path / "save" / "checkpoint_last.pt"))
    with torch.no_grad():
        hf_logits = hf(**enc).logits
        fs_logits = student(enc["input_ids"], features_only=False)[0]  # the export keeps fairseq's ids
    keep = enc["attention_mask"].bool()
    assert len(student.encoder.sentence_encoder.layers) == 3
    torch.testing.assert_close(hf_logits[keep], fs_logits[keep], atol=1e-4, rtol=0)
