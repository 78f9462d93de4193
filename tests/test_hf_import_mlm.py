"""distill-import-hf: the masked-LM head, fused LayerNorms, killed runs and bad input."""

import json
import logging
import os
import random
import signal
import subprocess
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq import checkpoint_utils

from user_dir.cli import run_main
from user_dir.cli.import_hf import main as import_main
from user_dir.encoders.wordpiece import BERT_TO_FAIRSEQ
from user_dir.preprocess.hf_import import OUTPUTS, fairseq_vocab_order, import_hf

from conftest import BIN, run

# BERT's specials are not at fairseq's places, so the import permutes rows
BERT_VOCAB = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(34)] + ["##s"]
ROBERTA_VOCAB = ["<s>", "<pad>", "</s>", "<unk>"] + [f"\u0120w{i}" for i in range(35)] + ["<mask>"]


def randomize(model):
    """Weights far from transformers' init (zero biases, unit LayerNorms) so a misplaced one shows."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name.lower() and name.endswith("weight") else 0))
    return model


def tiny_hf(path, model_type="bert", head=True, tie=True, act="gelu", eps=1e-12):
    """A random 2-layer BERT or RoBERTa saved by transformers, with its vocabulary file."""
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 hidden_act=act, layer_norm_eps=eps, tie_word_embeddings=tie)
    if model_type == "bert":
        config = transformers.BertConfig(vocab_size=len(BERT_VOCAB), max_position_embeddings=40, **sizes)
        cls = transformers.BertForMaskedLM if head else transformers.BertModel
        (path / "vocab.txt").write_text("".join(t + "\n" for t in BERT_VOCAB), encoding="utf-8")
    else:
        config = transformers.RobertaConfig(vocab_size=len(ROBERTA_VOCAB), max_position_embeddings=42,
                                            type_vocab_size=1, pad_token_id=1, **sizes)
        cls = transformers.RobertaForMaskedLM if head else transformers.RobertaModel
        (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(ROBERTA_VOCAB)}))
    torch.manual_seed(0)
    hf = randomize(cls(config)).eval()
    hf.save_pretrained(path)
    return hf


def fairseq_batch(vocab_size):
    """Fairseq ids: <s> w... </s>, right padding."""
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(4, vocab_size, (4, 14), generator=g)
    ids[:, 0] = 0
    for row, length in enumerate((14, 9, 5, 12)):
        ids[row, length - 1] = 2
        ids[row, length:] = 1
    return ids


def load(out):
    # no data override: the checkpoint's masked_lm task finds dict.txt where it was written
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(out / "model.pt")])
    return models[0].eval(), cfg, task


def compare_logits(hf, out, model_type):
    model, cfg, task = load(out)
    d = task.source_dictionary
    if model_type == "bert":
        order = fairseq_vocab_order(BERT_VOCAB, "vocab.txt")
        assert d.symbols == [BERT_TO_FAIRSEQ.get(BERT_VOCAB[i], BERT_VOCAB[i]) for i in order]
    else:
        order = list(range(len(ROBERTA_VOCAB)))
        assert d.symbols == ROBERTA_VOCAB
    ids = fairseq_batch(len(d))
    ids[1, 3] = ids[2, 2] = d.index("<mask>")
    mask = ids.ne(d.pad())
    hf_ids = torch.tensor(order)[ids]
    with torch.no_grad():
        ref = hf(input_ids=hf_ids, attention_mask=mask.long()).logits[..., order]
        logits = model(ids)[0]
        assert torch.equal(model.encoder(ids)[0], logits)
    assert logits.shape == ref.shape
    diff = (logits[mask] - ref[mask]).abs().max().item()
    assert diff < 1e-4, diff
    return model, cfg


@pytest.mark.parametrize("model_type,tie,act", [
    ("bert", True, "gelu"), ("bert", False, "gelu_new"), ("roberta", True, "gelu"), ("roberta", False, "relu"),
])
def test_mlm_head_logits_match_hugging_face(tmp_path, model_type, tie, act):
    hf = tiny_hf(tmp_path / "hf", model_type, tie=tie, act=act, eps=1e-7)
    summary = import_hf(str(tmp_path / "hf"), str(tmp_path / "out"))
    assert summary["has_mlm_head"] is True
    model, cfg = compare_logits(hf, tmp_path / "out", model_type)
    assert cfg.model.layer_norm_eps == 1e-7
    assert model.encoder.lm_head.layer_norm.eps == 1e-7
    emb = model.encoder.sentence_encoder.embed_tokens.weight
    assert (model.encoder.lm_head.weight is emb) == tie


def test_no_mlm_head_keeps_a_fresh_one(tmp_path):
    tiny_hf(tmp_path / "hf", "bert", head=False)
    summary = import_hf(str(tmp_path / "hf"), str(tmp_path / "out"))
    assert summary["has_mlm_head"] is False
    model, _, _ = load(tmp_path / "out")
    assert model.encoder.lm_head.weight is model.encoder.sentence_encoder.embed_tokens.weight
    assert model(fairseq_batch(len(BERT_VOCAB)))[0].shape == (4, 14, len(BERT_VOCAB))


class StandInFusedLayerNorm(nn.Module):
    """apex's FusedLayerNorm as fairseq sees it: a LayerNorm that is no nn.LayerNorm."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.normalized_shape))
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape))

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


def test_fused_layer_norm_gets_the_epsilon(tmp_path, monkeypatch):
    from fairseq.modules import layer_norm

    hf = tiny_hf(tmp_path / "hf", "bert", eps=1e-3)  # far from fairseq's 1e-5: a missed one shows
    monkeypatch.setattr(layer_norm, "has_fused_layernorm", True, raising=False)
    monkeypatch.setattr(layer_norm, "FusedLayerNorm", StandInFusedLayerNorm, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    import_hf(str(tmp_path / "hf"), str(tmp_path / "out"))
    model, _ = compare_logits(hf, tmp_path / "out", "bert")
    fused = [m for m in model.modules() if isinstance(m, StandInFusedLayerNorm)]
    assert len(fused) == 2 * 2 + 2 and all(m.eps == 1e-3 for m in fused)  # 2 per layer, embedding, head
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())


# --- killed runs ---------------------------------------------------------------------------------


def files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def check_after_kill(out, expected):
    """What a killed run leaves: finished files only (and temporaries); model.pt only when all are."""
    if not out.exists():
        return
    done = {name: data for name, data in files(out).items() if not name.startswith(".")}
    assert set(done) <= set(expected)
    if "model.pt" in done:
        assert set(done) == set(expected), "model.pt before the other files"
    for name, data in done.items():
        assert data == expected[name], f"{name} differs from a clean import's"


def test_killed_import_reruns_to_identical_files(tmp_path):
    hf_dir = tmp_path / "hf"
    tiny_hf(hf_dir, "bert")
    import transformers

    transformers.BertTokenizerFast(vocab_file=str(hf_dir / "vocab.txt")).save_pretrained(hf_dir)
    out = tmp_path / "out"
    import_hf(str(hf_dir), str(out))  # the clean import (in this process: the same bytes, faster)
    expected = files(out)
    assert not [n for n in expected if n.startswith(".")]
    assert {"dict.txt", "tokenizer.json", "vocab.txt", "config.json", "model-args.txt", "model.pt"} <= set(expected)
    os.rename(out, tmp_path / "clean")  # the checkpoint names its directory: rerun into the same one
    cmd = [str(BIN / "distill-import-hf"), "--hf-dir", str(hf_dir), "--output", str(out)]

    def killed(delay=None):
        """Kill -9 after ``delay`` s, or as the first copied file (or its temporary) shows."""
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if delay is not None:
            time.sleep(delay)
        else:
            while proc.poll() is None and not (out.exists() and any(
                    n.lstrip(".").startswith(("tokenizer", "vocab", "config")) for n in os.listdir(out))):
                time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return proc.pid, time.monotonic() - start

    pid, write_s = killed()
    check_after_kill(out, expected)
    rng = random.Random(0)
    for _ in range(2):
        pid, _ = killed(delay=rng.uniform(0.3, 1.2) * write_s)
        check_after_kill(out, expected)
    # temporaries of a dead writer, whatever the kills left
    out.mkdir(exist_ok=True)
    (out / f".model.pt.{pid}.deadbeef.tmp").write_bytes(b"partial")
    (out / f".dict.txt.{pid}.x_1y2z3w.tmp").write_bytes(b"partial")
    run(cmd)
    assert files(out) == expected


# --- bad input -----------------------------------------------------------------------------------


def import_error(capsys, hf_dir, out):
    """Exit status and stderr of the console tool's main, run in this process."""
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        with pytest.raises(SystemExit) as e:
            run_main(import_main, ["--hf-dir", str(hf_dir), "--output", str(out)])
    finally:
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
    err = capsys.readouterr().err.strip().split("\n")
    assert e.value.code == 2 and len(err) == 1, err
    return err[0]


def test_bad_input_is_named(tmp_path, capsys):
    hf_dir = tmp_path / "hf"
    tiny_hf(hf_dir, "bert")
    capsys.readouterr()  # save_pretrained's progress bar
    out = tmp_path / "out"
    st = hf_dir / "model.safetensors"
    good = st.read_bytes()

    st.write_bytes(good[: len(good) // 2])
    assert f"{st} cannot be read" in import_error(capsys, hf_dir, out)
    st.write_bytes(b"\xff" * 8 + good[8:])  # header length garbage
    assert f"{st} cannot be read" in import_error(capsys, hf_dir, out)
    st.write_bytes(good[:8] + b"{" * 16 + good[24:])  # header JSON garbage
    assert f"{st} cannot be read" in import_error(capsys, hf_dir, out)
    st.write_bytes(good)

    config = hf_dir / "config.json"
    text = config.read_text()
    config.write_text(text[: len(text) // 2])
    assert f"{config} is not valid JSON" in import_error(capsys, hf_dir, out)
    config.write_text(json.dumps({k: v for k, v in json.loads(text).items() if k != "hidden_size"}))
    assert f"{config} lacks the integers ['hidden_size']" in import_error(capsys, hf_dir, out)
    config.write_text(text)

    (hf_dir / "vocab.txt").rename(tmp_path / "vocab.txt")
    assert f"not found: {hf_dir / 'vocab.txt'}" in import_error(capsys, hf_dir, out)
    (tmp_path / "vocab.txt").rename(hf_dir / "vocab.txt")

    assert f"not found: {tmp_path / 'missing'}" in import_error(capsys, tmp_path / "missing", out)
    assert f"{st} is a file" in import_error(capsys, st, out)
    assert f"output {config} is a file" in import_error(capsys, hf_dir, config)
    assert not out.exists()  # refused before any output

    # the real console tool: exit 2 and one line that names the file
    st.write_bytes(good[:100])
    proc = run(["distill-import-hf", "--hf-dir", hf_dir, "--output", out], check=False)
    # fairseq's own notice at import time (a missing tensorboardX) is not the tool's
    lines = [line for line in proc.stderr.strip().split("\n") if not line.startswith("INFO:fairseq")]
    assert proc.returncode == 2 and len(lines) == 1 and f"{st} cannot be read" in lines[0], proc.stderr


def test_outputs_of_another_import_go(tmp_path):
    """A rerun from a directory without tokenizer.json leaves no earlier one beside the new model.pt."""
    tiny_hf(tmp_path / "hf", "bert")
    out = tmp_path / "out"
    out.mkdir()
    (out / "tokenizer.json").write_text("{}")
    (out / "model.pt").write_bytes(b"an earlier import")
    import_hf(str(tmp_path / "hf"), str(out))
    assert sorted(os.listdir(out)) == sorted(set(OUTPUTS) & {"dict.txt", "vocab.txt", "config.json",
                                                             "model-args.txt", "model.pt"})
