"""The D-BERT BiLSTM student and the glue_distillation task, through the real commands."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from fairseq.data import Dictionary

from user_dir.models.bilstm import BiLSTMClassifierConfig, BiLSTMEncoder

from conftest import REPO, read_tsv, run, valid_accuracies

LABEL_DICT = REPO / "data-bin-templates" / "sst2-binary" / "label" / "dict.txt"


def token_data_bin(work, splits, bpe_flags, srcdict=None, sides=("",)):
    """BPE-encode {split}{side}.txt, binarize into input0 (input1), copy labels."""
    data = work / "data-bin"
    for k, side in enumerate(sides):
        for split in splits:
            run(["distill-bpe-encode", *bpe_flags, "--input", work / f"{split}{side}.txt",
                 "--output", work / f"{split}{side}.bpe"])
        dict_flags = ["--srcdict", srcdict] if srcdict else []
        if k and not srcdict:
            dict_flags = ["--srcdict", data / "input0" / "dict.txt"]
        run(["fairseq-preprocess", "--only-source", *dict_flags, "--trainpref", work / f"train{side}.bpe",
             "--validpref", work / f"dev{side}.bpe", "--destdir", data / f"input{k}", "--workers", "2"])
    run(["fairseq-preprocess", "--only-source", "--srcdict", LABEL_DICT, "--trainpref", work / "train.label",
         "--validpref", work / "dev.label", "--destdir", data / "label", "--workers", "2"])
    return data


def train_flags(data, save_dir, arch="bilstm_classifier", extra=()):
    return ["fairseq-train", data, "--user-dir", REPO / "user_dir", "--task", "glue_distillation",
            "--num-classes", "2", "--arch", arch, "--lstm-hidden-size", "64", "--hidden-dim", "64",
            "--criterion", "distillation", "--lr", "2e-3", "--batch-size", "32",
            "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric", "--seed", "2",
            "--log-format", "simple", "--log-interval", "100", "--save-dir", save_dir,
            "--no-epoch-checkpoints", "--num-workers", "0", *extra]


def predict(ckpt, data, tsv, columns, tmp_path):
    proc = run(["distill-predict", "--checkpoint", ckpt, "--data-bin", data, "--input", tsv, "--header",
                "--text-column", *columns, "--label-column", "0" if len(columns) == 2 else "1",
                "--output", tmp_path / "pred.tsv"])
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def wordpiece_bin(sst2, imported_teacher, tmp_path_factory):
    work = tmp_path_factory.mktemp("bilstm")
    for name in ("train.txt", "dev.txt", "train.label", "dev.label"):
        shutil.copy(sst2["work"] / name, work / name)
    data = token_data_bin(work, ("train", "dev"), ["--wordpiece-vocab", imported_teacher / "tokenizer.json"],
                          srcdict=imported_teacher / "dict.txt")
    shutil.copytree(sst2["data_bin"] / "distill", data / "distill")
    return data


def test_distilled_bilstm_from_teacher_embeddings(wordpiece_bin, imported_teacher, sst2, glue, tmp_path):
    save = tmp_path / "ckpt"
    proc = run(train_flags(wordpiece_bin, save, extra=[
        "--optimizer", "mixed_adam", "--distillation-target", "--encoder-embed-dim", "384",
        "--embed-init", imported_teacher / "model.pt",
        "--max-epoch", "2", "--bpe", "wordpiece", "--wordpiece-vocab", imported_teacher / "tokenizer.json"]))
    log = proc.stdout + proc.stderr
    assert "embeddings: 30522 of 30522 rows from" in log
    assert f"mixed_adam: {30522 * 384} sparse and" in log  # the embedding rows go to SparseAdam
    accs = valid_accuracies(log)
    # measured 77.98 on 2026-12-01; majority class of SST-2 dev 50.9
    assert len(accs) == 2 and max(accs) >= 74.0, (accs, sst2["teacher_acc"])
    assert re.search(r"agreement [\d.]+", log)
    # raw dev.tsv through the checkpoint's own --bpe: the validation accuracy exactly
    summary = predict(save / "checkpoint_best.pt", wordpiece_bin, glue / "SST-2" / "dev.tsv", ["0"], tmp_path)
    assert summary["examples"] == 872 and summary["accuracy"] == pytest.approx(max(accs), abs=0.01)


def test_two_stacked_bidirectional_layers_train(wordpiece_bin, imported_teacher, glue, tmp_path):
    save = tmp_path / "ckpt"
    proc = run(train_flags(wordpiece_bin, save, extra=[
        "--optimizer", "mixed_adam", "--distillation-target", "--encoder-embed-dim", "64", "--lstm-layers", "2",
        "--lstm-hidden-size", "32", "--max-epoch", "1",
        "--bpe", "wordpiece", "--wordpiece-vocab", imported_teacher / "tokenizer.json"]))
    accs = valid_accuracies(proc.stdout + proc.stderr)
    assert len(accs) == 1 and accs[0] >= 69.0, accs  # measured 73.39 on 2026-12-01; majority 50.9
    ckpt = torch.load(save / "checkpoint_best.pt", weights_only=False)
    assert ckpt["model"]["encoder.forward_upper.0.weight_ih_l0"].shape == (4 * 32, 2 * 32)
    # the checkpoint reloads with its stacked layers: the validation accuracy exactly
    summary = predict(save / "checkpoint_best.pt", wordpiece_bin, glue / "SST-2" / "dev.tsv", ["0"], tmp_path)
    assert summary["accuracy"] == pytest.approx(max(accs), abs=0.01)


def test_sentencepiece_tokens_and_mse_loss(sst2, glue, tmp_path):
    work = tmp_path
    for name in ("train.txt", "dev.txt", "train.label", "dev.label"):
        shutil.copy(sst2["work"] / name, work / name)
    spm = work / "sp.model"
    run(["distill-bpe-encode", "--bpe", "sentencepiece", "--sentencepiece-model", spm,
         "--sentencepiece-vocab-size", "2000", "--input", work / "train.txt", "--output", work / "ignored.bpe"])
    data = token_data_bin(work, ("train", "dev"), ["--bpe", "sentencepiece", "--sentencepiece-model", spm])
    shutil.copytree(sst2["data_bin"] / "distill", data / "distill")
    proc = run(train_flags(data, work / "ckpt", extra=[
        "--optimizer", "adam", "--distillation-target", "--distillation-loss", "mse",
        "--encoder-embed-dim", "64", "--pooling", "max",
        "--max-epoch", "1", "--bpe", "sentencepiece", "--sentencepiece-model", spm]))
    accs = valid_accuracies(proc.stdout + proc.stderr)
    # one epoch from random embeddings: measured 75.11 on 2026-12-01; majority 50.9
    assert accs and accs[0] >= 71.0
    summary = predict(work / "ckpt" / "checkpoint_best.pt", data, glue / "SST-2" / "dev.tsv", ["0"], tmp_path)
    assert summary["accuracy"] == pytest.approx(max(accs), abs=0.01)
    # strings through the hub: HTML line breaks read as spaces, as the file reader reads them
    from user_dir.inference.hub_interface import StudentHubInterface

    hub = StudentHubInterface.from_pretrained(str(work / "ckpt"), "checkpoint_best.pt", str(data), device="cpu")
    plain = ["a gripping , funny film", "dull and far too long"]
    tagged = ["a gripping ,<br /><br />funny film", "dull and<BR>far too long"]
    assert hub.task.encode_texts(tagged)[0].tolist() != hub.task.encode_texts(["a gripping ,<b>funny film"])[0].tolist()
    np.testing.assert_array_equal(hub.logits(tagged), hub.logits(plain))


def test_mrpc_pairs_with_the_siamese_bilstm(glue, imported_teacher, tmp_path):
    work = tmp_path
    for split, name in (("train", "train.tsv"), ("dev", "dev.tsv")):
        rows = read_tsv(glue / "MRPC" / name)[:1200]
        for side, col in (("", 3), ("1", 4)):
            (work / f"{split}{side}.txt").write_text("".join(r[col] + "\n" for r in rows), encoding="utf-8")
        (work / f"{split}.label").write_text("".join(r[0] + "\n" for r in rows))
    data = token_data_bin(work, ("train", "dev"), ["--wordpiece-vocab", imported_teacher / "tokenizer.json"],
                          srcdict=imported_teacher / "dict.txt", sides=("", "1"))
    # gold labels only (no teacher logits): the criterion falls back to cross-entropy
    proc = run(train_flags(data, work / "ckpt", arch="bilstm_dbert_siamese", extra=[
        "--optimizer", "mixed_adam", "--encoder-embed-dim", "384", "--embed-init", imported_teacher / "model.pt",
        "--max-epoch", "2",
        "--lstm-hidden-size", "32", "--bpe", "wordpiece", "--wordpiece-vocab", imported_teacher / "tokenizer.json"]))
    log = proc.stdout + proc.stderr
    assert "sentence pairs" in log
    accs = valid_accuracies(log)
    # measured 70.34 on 2026-12-01; majority class 68.4 (epoch 1 was exactly that): barely above it
    assert len(accs) == 2 and max(accs) >= 69.0, accs
    summary = predict(work / "ckpt" / "checkpoint_best.pt", data, glue / "MRPC" / "dev.tsv", ["3", "4"], tmp_path)
    assert summary["examples"] == 408 and summary["accuracy"] == pytest.approx(max(accs), abs=0.01)
    assert summary["f1"] >= 81.5  # measured 82.07; all-positive scores 81.2
    # the single-text architecture refuses a pair data-bin
    proc = run(train_flags(data, work / "x", extra=["--optimizer", "adam", "--max-epoch", "1"]), check=False)
    assert proc.returncode != 0 and "use a bilstm_siamese_classifier architecture" in proc.stderr


def tiny_encoder(pooling, **kw):
    d = Dictionary()
    for w in "a b c d e".split():
        d.add_symbol(w)
    cfg = BiLSTMClassifierConfig(encoder_embed_dim=8, lstm_hidden_size=6, pooling=pooling, **kw)
    return BiLSTMEncoder(cfg, d).eval(), d


@pytest.mark.parametrize("pooling", ["final", "max"])
def test_padding_never_changes_a_text(pooling):
    torch.manual_seed(0)
    enc, d = tiny_encoder(pooling)
    a = torch.tensor([5, 6, 7, 8, 2])
    b = torch.tensor([6, 2])
    batch = torch.full((2, 5), d.pad())
    batch[0], batch[1, :2] = a, b
    with torch.no_grad():
        together = enc(batch, torch.tensor([5, 2]))
        alone = torch.cat([enc(a[None], torch.tensor([5])), enc(b[None], torch.tensor([2]))])
    assert together.shape == (2, 12)
    assert torch.allclose(together, alone, atol=1e-6)


def test_embedding_init_by_symbol_and_dimension_check(imported_teacher):
    from user_dir.models.teacher_embeddings import init_by_symbol, load_teacher_embeddings

    symbols, weight, tokenizer = load_teacher_embeddings(str(imported_teacher / "model.pt"))
    assert tokenizer.endswith("tokenizer.json")
    d = Dictionary()
    for w in ("good", "film", "zzqxnotaword"):
        d.add_symbol(w)
    embed = torch.nn.Embedding(len(d), weight.size(1), padding_idx=d.pad())
    before = embed.weight[d.index("zzqxnotaword")].clone()
    init_by_symbol(embed, d, str(imported_teacher / "model.pt"))
    assert torch.equal(embed.weight[d.index("good")], weight[symbols.index("good")])
    assert torch.equal(embed.weight[d.index("zzqxnotaword")], before)  # unknown to the teacher: random
    assert embed.weight[d.pad()].abs().sum() == 0
    small = torch.nn.Embedding(len(d), 16)
    with pytest.raises(ValueError, match="384-d embeddings: set --encoder-embed-dim 384"):
        init_by_symbol(small, d, str(imported_teacher / "model.pt"))
    with pytest.raises(FileNotFoundError, match="--embed-init checkpoint not found"):
        load_teacher_embeddings(str(imported_teacher / "nope.pt"))


def directions(enc):
    return [enc.forward_lstm, *enc.forward_upper], [enc.backward_lstm, *enc.backward_upper]


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("pooling", ["final", "max"])
def test_equals_a_packed_bidirectional_lstm(pooling, layers):
    torch.manual_seed(1)
    enc, d = tiny_encoder(pooling, lstm_layers=layers)
    ref = torch.nn.LSTM(8, 6, num_layers=layers, bidirectional=True, batch_first=True)
    fwd, bwd = directions(enc)
    assert len(fwd) == len(bwd) == layers
    with torch.no_grad():
        for k in range(layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(fwd[k], f"{name}_l0").copy_(getattr(ref, f"{name}_l{k}"))
                getattr(bwd[k], f"{name}_l0").copy_(getattr(ref, f"{name}_l{k}_reverse"))
        lengths = torch.tensor([7, 3, 1, 5])
        tokens = torch.full((4, 7), d.pad())
        for i, n in enumerate(lengths):
            tokens[i, :n] = torch.randint(4, len(d), (int(n),))
        x = enc.embed_tokens(tokens)
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h, _) = ref(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, padding_value=float("-inf"))
        ours, final = enc.lstm_outputs(x, lengths)
        valid = tokens.ne(d.pad())
        assert torch.allclose(ours[valid], out[valid], atol=1e-6)  # every time step of the last layer
        assert torch.allclose(final, torch.cat([h[-2], h[-1]], dim=-1), atol=1e-6)
        expected = torch.cat([h[-2], h[-1]], dim=-1) if pooling == "final" else out.max(dim=1).values
        assert torch.allclose(enc(tokens, lengths), expected, atol=1e-6)


def test_stacked_layers_read_both_directions_and_get_gradients():
    torch.manual_seed(2)
    enc, d = tiny_encoder("final", lstm_layers=2)
    fwd, bwd = directions(enc)
    assert fwd[1].input_size == bwd[1].input_size == 12  # [fwd, bwd] of layer 0, not 6
    enc.train()
    tokens = torch.tensor([[5, 6, 7, 8], [6, 7, d.pad(), d.pad()]])
    enc(tokens, torch.tensor([4, 2])).pow(2).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_old_multilayer_checkpoints_are_refused_and_one_layer_names_kept():
    enc, _ = tiny_encoder("final")
    assert {k for k in enc.state_dict() if "lstm" in k} == {
        f"{d}_lstm.{n}_l0" for d in ("forward", "backward") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    old = {"encoder.forward_lstm.weight_ih_l0": None, "encoder.forward_lstm.weight_ih_l1": None}
    with pytest.raises(ValueError, match="two one-way stacks"):
        enc.upgrade_state_dict_named(old, "encoder")
