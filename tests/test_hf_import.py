"""A Hugging Face BERT imported into fairseq computes the same function."""

import os

import pytest
import torch
from fairseq import checkpoint_utils
from fairseq.data import data_utils, encoders

from user_dir.encoders.wordpiece import BERT_TO_FAIRSEQ
from user_dir.preprocess.hf_import import fairseq_vocab_order

from conftest import read_tsv, run

SENTENCES_EXTRA = ["Ünïcödé naïve café — 中文 test!", "", "x" * 300, "An UNSEEN-word: zxqvbnmlk."]


@pytest.fixture(scope="module")
def both(minilm, imported_teacher, glue):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(minilm))
    hf = transformers.BertModel.from_pretrained(str(minilm)).eval()
    # the checkpoint is reloaded from disk: the LayerNorm epsilon must travel in its config
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(imported_teacher / "model.pt")], arg_overrides={"data": str(imported_teacher)})
    sentences = [r[0] for r in read_tsv(glue / "SST-2" / "dev.tsv")[:24]] + SENTENCES_EXTRA
    return tok, hf, models[0].eval(), cfg, task, sentences


def fairseq_tokens(cfg, task, sentences, teacher_dir):
    bpe = encoders.build_bpe(type("C", (), {"bpe": "wordpiece",
                                            "wordpiece_vocab": str(teacher_dir / "tokenizer.json"),
                                            "wordpiece_lowercase": True})())
    d = task.source_dictionary
    return [d.encode_line(f"<s> {bpe.encode(s)} </s>", append_eos=False, add_if_not_exist=False).long()
            for s in sentences]


def test_hidden_states_match_hugging_face(both, imported_teacher):
    tok, hf, model, cfg, task, sentences = both
    enc = tok(sentences, padding=True, return_tensors="pt")
    ids = fairseq_tokens(cfg, task, sentences, imported_teacher)
    # tokenization: same tokens, named the fairseq way
    vocab = (imported_teacher / "vocab.txt").read_text(encoding="utf-8").split("\n")
    d = task.source_dictionary
    for row, mask, ours in zip(enc["input_ids"].tolist(), enc["attention_mask"], ids):
        theirs = [BERT_TO_FAIRSEQ.get(vocab[i], vocab[i]) for i in row[: int(mask.sum())]]
        assert [d[i] for i in ours.tolist()] == theirs
    with torch.no_grad():
        ref = hf(**enc).last_hidden_state
        out = model.encoder.extract_features(data_utils.collate_tokens(ids, d.pad()))[0]
    mask = enc["attention_mask"].bool()
    assert out.shape == ref.shape
    diff = (out[mask] - ref[mask]).abs().max().item()
    assert diff < 1e-4, diff
    assert cfg.model.layer_norm_eps == 1e-12


def test_vocabulary_order_and_flags(imported_teacher, minilm):
    vocab = (minilm / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    order = fairseq_vocab_order(vocab, "vocab.txt")
    assert [vocab[i] for i in order[:4]] == ["[CLS]", "[PAD]", "[SEP]", "[UNK]"]
    assert sorted(order) == list(range(len(vocab)))
    lines = (imported_teacher / "dict.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(vocab) - 4 and "<mask> 1" in lines and not any(l.startswith("[MASK]") for l in lines)
    flags = (imported_teacher / "model-args.txt").read_text().split()
    assert flags[:2] == ["--arch", "hf_bert"] and flags[flags.index("--layer-norm-eps") + 1] == "1e-12"
    assert flags[flags.index("--encoder-layers") + 1] == "6"


def test_bpe_encode_tool(imported_teacher, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"\xef\xbb\xbfHello, World!\r\n\nnaive caf\xc3\xa9\nbad \xff byte")
    run(["distill-bpe-encode", "--wordpiece-vocab", imported_teacher / "tokenizer.json",
         "--input", src, "--output", tmp_path / "out.txt"])
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n") == [
        "hello , world !", "", "naive cafe", "bad byte", ""]  # BERT's normalizer drops U+FFFD


def test_import_refusals(tmp_path, minilm):
    bad = tmp_path / "hf"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "gpt2"}')
    proc = run(["distill-import-hf", "--hf-dir", bad, "--output", tmp_path / "out"], check=False)
    assert proc.returncode == 2 and "BERT and RoBERTa are converted" in proc.stderr
    (bad / "config.json").write_text((minilm / "config.json").read_text())
    (bad / "vocab.txt").write_text((minilm / "vocab.txt").read_text(encoding="utf-8")[:5000], encoding="utf-8")
    os.symlink(minilm / "model.safetensors", bad / "model.safetensors")
    proc = run(["distill-import-hf", "--hf-dir", bad, "--output", tmp_path / "out"], check=False)
    assert proc.returncode == 2 and "tokens but the embedding has 30522 rows" in proc.stderr


def test_roberta_directory_imports_exactly(tmp_path):
    """A small random RoBERTa saved by transformers: same hidden states after import."""
    import json

    import transformers

    hf_dir = tmp_path / "roberta"
    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + [f"\u0120w{i}" for i in range(55)] + ["<mask>"]
    config = transformers.RobertaConfig(vocab_size=len(tokens), hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=64,
                                        max_position_embeddings=42, type_vocab_size=1, pad_token_id=1)
    torch.manual_seed(0)
    hf = transformers.RobertaModel(config, add_pooling_layer=False).eval()
    hf.save_pretrained(hf_dir)
    (hf_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    run(["distill-import-hf", "--hf-dir", hf_dir, "--output", tmp_path / "out"])
    flags = (tmp_path / "out" / "model-args.txt").read_text().split()
    assert flags[flags.index("--max-positions") + 1] == "40"
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(tmp_path / "out" / "model.pt")], arg_overrides={"data": str(tmp_path / "out")})
    assert task.source_dictionary.symbols == tokens  # RoBERTa is already in fairseq order
    ids = torch.randint(4, len(tokens), (3, 12))
    ids[0, 0] = ids[1, 0] = ids[2, 0] = 0
    ids[1, 8:] = 1  # right padding
    ids[2, 5:] = 1
    mask = ids.ne(1)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        out = models[0].eval().encoder.extract_features(ids)[0]
    assert (out[mask] - ref[mask]).abs().max().item() < 1e-5
