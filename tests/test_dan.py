from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary
from omegaconf import OmegaConf, open_dict

from user_dir.models.dan import (
    DANEncoder,
    FeatureBasedLinearBiencoderModel,
    FeatureBasedLinearModel,
    FeatureBasedLinearModelConfig,
)


def make_dict(n=20):
    d = Dictionary()
    for i in range(n):
        d.add_symbol(f"f{i}")
    return d


def cfg(**kw):
    c = FeatureBasedLinearModelConfig()
    c.max_positions = 512
    c.optimizer_name = "mixed_adam"
    c.fp16 = c.bf16 = c.memory_efficient_fp16 = False
    c.distributed_world_size = 1
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def task(d, n_inputs=1):
    return SimpleNamespace(source_dictionary=d, input_keys=("input0", "input1")[:n_inputs])


@pytest.mark.parametrize("mode", ["mean", "max", "sum", "attn"])
def test_padding_never_takes_part(mode):
    d = make_dict()
    enc = DANEncoder(cfg(embed_bag_mode=mode, encoder_embed_dim=8), d, sparse=True)
    with torch.no_grad():
        enc.embed_tokens.weight[d.pad()] = 100.0  # would show if padding were pooled
        enc.embed_tokens.weight[4:] = -torch.rand(20, 8) - 1.0  # all negative: max must not see 0s
    tokens = torch.tensor([[4, 5, 6]])
    padded = torch.tensor([[4, 5, 6, d.pad(), d.pad()]])
    assert torch.allclose(enc(tokens), enc(padded), atol=1e-6)
    emb = enc.embed_tokens.weight[4:7]
    ref = {"mean": emb.mean(0), "max": emb.max(0).values, "sum": emb.sum(0)}
    if mode in ref:
        assert torch.allclose(enc(padded)[0], ref[mode], atol=1e-6)
    empty = enc(torch.tensor([[d.pad(), d.pad()]]))
    assert torch.equal(empty, torch.zeros_like(empty))


@pytest.mark.parametrize("mode", ["mean", "max", "attn"])
def test_sparse_gradient_touches_only_batch_rows(mode):
    d = make_dict()
    model = FeatureBasedLinearModel.build_model(cfg(embed_bag_mode=mode), task(d))
    model.register_classification_head("h", num_classes=3)
    logits, _ = model(torch.tensor([[4, 9, d.pad()], [9, 10, 11]]), classification_head_name="h")
    assert logits.shape == (2, 3)
    logits.sum().backward()
    grad = model.encoder.embed_tokens.weight.grad
    assert grad.is_sparse
    assert set(grad.coalesce().indices()[0].tolist()) <= {4, 9, 10, 11, d.pad()}
    assert model.encoder.embed_tokens.weight.param_group == "sparse"


def test_dense_with_other_optimizers():
    model = FeatureBasedLinearModel.build_model(cfg(optimizer_name="adam"), task(make_dict()))
    assert not model.encoder.sparse
    assert FeatureBasedLinearModel.build_model(cfg(optimizer_name="adam", sparse_embedding="yes"),
                                               task(make_dict())).encoder.sparse


def test_biencoder_features_and_task_check():
    d = make_dict()
    model = FeatureBasedLinearBiencoderModel.build_model(cfg(encoder_embed_dim=6), task(d, 2))
    model.register_classification_head("h", num_classes=2)
    a, b = torch.tensor([[4, 5]]), torch.tensor([[6, d.pad()]])
    x, _ = model(a, src_tokens1=b)
    u, v = model.encoder(a), model.encoder(b)
    assert torch.allclose(x, torch.cat([u, v, u * v, (u - v).abs()], -1))
    assert model.classification_heads["h"].dense.in_features == 24
    with pytest.raises(ValueError, match="use a feature_based_linear_biencoder_model"):
        FeatureBasedLinearModel.build_model(cfg(), task(d, 2))
    with pytest.raises(ValueError, match="takes 2 input"):
        FeatureBasedLinearBiencoderModel.build_model(cfg(), task(d, 1))


def test_checkpoint_with_other_dictionary_is_refused():
    small = FeatureBasedLinearModel.build_model(cfg(), task(make_dict(20)))
    small.register_classification_head("h", num_classes=2)
    big = FeatureBasedLinearModel.build_model(cfg(), task(make_dict(30)))
    big.register_classification_head("h", num_classes=2)
    with pytest.raises(ValueError, match=r"24 rows but the input dictionary .* has 34 entries"):
        big.load_state_dict(small.state_dict())
    three = FeatureBasedLinearModel.build_model(cfg(), task(make_dict(20)))
    three.register_classification_head("h", num_classes=3)
    with pytest.raises(ValueError, match="has 2 classes but the task has 3"):
        three.load_state_dict(small.state_dict())


@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_flat_pooling_equals_padded(mode):
    d = make_dict()
    enc = DANEncoder(cfg(embed_bag_mode=mode, encoder_embed_dim=8), d, sparse=False)
    bags = [[4, 5, 6], [], [7], [8, 9]]
    padded = torch.full((4, 3), d.pad())
    for i, b in enumerate(bags):
        padded[i, : len(b)] = torch.tensor(b, dtype=torch.long)
    flat = torch.tensor([x for b in bags for x in b])
    counts = torch.tensor([len(b) for b in bags])
    assert torch.allclose(enc.pool_flat(flat, counts), enc(padded), atol=1e-6)


def test_ngram_embeddings_from_the_teacher(imported_teacher, tmp_path):
    from user_dir.preprocess.ngrams import JOINER
    from user_dir.models.teacher_embeddings import load_teacher_embeddings

    teacher = load_teacher_embeddings(str(imported_teacher / "model.pt"))
    row = {s: i for i, s in enumerate(teacher.symbols)}
    d = Dictionary()
    for gram in ("good", f"very{JOINER}good", "unwatchable", "!"):
        d.add_symbol(gram)
    ckpt = str(imported_teacher / "model.pt")
    model = FeatureBasedLinearModel.build_model(cfg(encoder_embed_dim=384, embed_init=ckpt), task(d))
    w = model.encoder.embed_tokens.weight
    assert torch.equal(w[d.index("good")], teacher.weight[row["good"]])
    both = (teacher.weight[row["very"]] + teacher.weight[row["good"]]) / 2
    assert torch.allclose(w[d.index(f"very{JOINER}good")], both)
    # a word of several WordPiece tokens: the mean of its pieces
    pieces = ["un", "##watch", "##able"]
    assert all(p in row for p in pieces)
    expected = torch.stack([teacher.weight[row[p]] for p in pieces]).mean(0)
    assert torch.allclose(w[d.index("unwatchable")], expected, atol=1e-6)
    # a model built to receive a checkpoint's weights (fairseq passes from_checkpoint to the
    # task) does not read the file again
    from user_dir.tasks.student_task import StudentTask

    gone = str(tmp_path / "moved.pt")
    loading = task(d)
    loading.cfg = SimpleNamespace(max_positions=512, classification_head_name="h", num_classes=2)
    loading.check_model_inputs = lambda cfg, transformer: None  # the task's hook (the DAN: nothing to check)
    model_cfg = OmegaConf.structured(cfg(encoder_embed_dim=384, embed_init=gone))
    with open_dict(model_cfg):
        model_cfg._name = "feature_based_linear_model"
    model = StudentTask.build_model(loading, model_cfg, from_checkpoint=True)
    assert model.cfg.embed_init == "" and "h" in model.classification_heads
    with pytest.raises(FileNotFoundError, match="--embed-init checkpoint not found"):
        FeatureBasedLinearModel.build_model(cfg(encoder_embed_dim=384, embed_init=gone), task(d))
    with pytest.raises(ValueError, match="set --encoder-embed-dim 384"):
        FeatureBasedLinearModel.build_model(cfg(encoder_embed_dim=32, embed_init=ckpt), task(d))


def test_deep_head_layers_and_one_layer_names():
    d = make_dict()
    deep = FeatureBasedLinearModel.build_model(cfg(encoder_embed_dim=6, hidden_dim=5, head_layers=3), task(d))
    deep.register_classification_head("h", num_classes=2)
    head = deep.classification_heads["h"].eval()
    assert [tuple(m.weight.shape) for m in head.extra_layers] == [(5, 5), (5, 5)]
    x = torch.randn(4, 6)
    h = torch.tanh(head.dense(x))
    for layer in head.extra_layers:
        h = torch.tanh(layer(h))
    assert torch.allclose(head(x), head.out_proj(h), atol=1e-6)
    # a one-layer head keeps RoBERTa's parameter names (older checkpoints load)
    one = FeatureBasedLinearModel.build_model(cfg(), task(d))
    one.register_classification_head("h", num_classes=2)
    assert sorted(k for k in one.state_dict() if k.startswith("classification_heads")) == [
        "classification_heads.h.dense.bias", "classification_heads.h.dense.weight",
        "classification_heads.h.out_proj.bias", "classification_heads.h.out_proj.weight"]
    with pytest.raises(ValueError, match="at least 1 hidden layer"):
        FeatureBasedLinearModel.build_model(cfg(head_layers=0), task(d)).register_classification_head("h", 2)


@pytest.mark.parametrize("mode,hidden", [("mean", 8), ("sum", 8), ("mean", 5)])
def test_folding_the_first_layer_keeps_the_function(mode, hidden):
    d = make_dict()
    model = FeatureBasedLinearModel.build_model(
        cfg(embed_bag_mode=mode, encoder_embed_dim=8, hidden_dim=hidden, head_layers=2,
            pooler_activation_fn="relu"), task(d))
    model.register_classification_head("h", num_classes=3)
    model.eval()
    padded = torch.tensor([[4, 5, 6], [7, d.pad(), d.pad()], [d.pad(), d.pad(), d.pad()]])
    flat, counts = torch.tensor([4, 5, 6, 7]), torch.tensor([3, 1, 0])
    before, _ = model(padded, classification_head_name="h")
    assert model.fold_first_layer("h")
    assert model.encoder.embed_tokens.weight.shape == (len(d), hidden)
    assert model.encoder.embed_tokens.embedding_dim == hidden
    after, _ = model(padded, classification_head_name="h")
    assert torch.allclose(before, after, atol=1e-5)
    head = model.classification_heads["h"]
    assert torch.allclose(before, head(model.encoder.pool_flat(flat, counts)), atol=1e-5)
    assert not model.fold_first_layer("h")  # once only
    with pytest.raises(RuntimeError, match="inference only"):
        model.train()


def test_folding_is_declined_where_it_does_not_hold():
    d = make_dict()
    for kw in ({"embed_bag_mode": "max"}, {"embed_bag_mode": "attn"}, {"hidden_dim": 128}):
        model = FeatureBasedLinearModel.build_model(cfg(**kw), task(d))
        model.register_classification_head("h", num_classes=2)
        table = model.encoder.embed_tokens.weight.clone()
        assert not model.fold_first_layer("h")
        assert torch.equal(model.encoder.embed_tokens.weight, table)
    pair = FeatureBasedLinearBiencoderModel.build_model(cfg(), task(d, 2))
    pair.register_classification_head("h", num_classes=2)
    assert not pair.fold_first_layer("h")
    two = FeatureBasedLinearModel.build_model(cfg(), task(d))
    two.register_classification_head("a", num_classes=2)
    two.register_classification_head("b", num_classes=2)
    assert not two.fold_first_layer("a")


def test_deep_head_through_fairseq_train_and_distill_predict(sst2, tmp_path):
    """--head-layers 3 trains through fairseq-train; distill-predict (which folds the first layer
    into the table) scores what training's validation scored, and folding changes no prediction."""
    import json

    import numpy as np

    from conftest import TRAIN_FLAGS, run, valid_accuracies
    from user_dir.inference.hub_interface import StudentHubInterface

    save = tmp_path / "ckpt"
    log = run(["fairseq-train", sst2["data_bin"], *TRAIN_FLAGS, "--head-layers", "3",
               "--pooler-activation-fn", "relu", "--max-epoch", "2", "--save-dir", save,
               "--no-epoch-checkpoints"])
    accs = valid_accuracies(log.stdout + log.stderr)
    proc = run(["distill-predict", "--checkpoint", save / "checkpoint_best.pt", "--data-bin", sst2["data_bin"],
                "--input", sst2["work"] / "dev.txt"])
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["examples"] == 872
    labels = (sst2["work"] / "dev.label").read_text().split()
    folded = StudentHubInterface.from_pretrained(str(save), "checkpoint_best.pt", str(sst2["data_bin"]))
    plain = StudentHubInterface.from_pretrained(str(save), "checkpoint_best.pt", str(sst2["data_bin"]), fold=False)
    assert folded.model.folded_head is not None and plain.model.folded_head is None
    assert len(folded.model.classification_heads[folded.head].extra_layers) == 2
    texts = (sst2["work"] / "dev.txt").read_text().splitlines()
    assert np.allclose(folded.logits(texts), plain.logits(texts), atol=1e-4)
    preds = folded.predict(texts)
    assert preds == plain.predict(texts)
    assert 100.0 * np.mean([p == g for p, g in zip(preds, labels)]) == pytest.approx(max(accs), abs=0.01)
    # the table in half precision: float32 everywhere else, outputs within half's rounding
    half = StudentHubInterface.from_pretrained(str(save), "checkpoint_best.pt", str(sst2["data_bin"]),
                                               table_dtype="float16")
    assert half.model.encoder.embed_tokens.weight.dtype == torch.float16
    assert np.allclose(half.logits(texts), plain.logits(texts), atol=2e-2)
    assert np.mean([a == b for a, b in zip(half.predict(texts), preds)]) >= 0.99
    with pytest.raises(ValueError, match="choose from"):
        StudentHubInterface.from_pretrained(str(save), "checkpoint_best.pt", str(sst2["data_bin"]),
                                            table_dtype="int4")
    proc = run(["distill-predict", "--checkpoint", save / "checkpoint_best.pt", "--data-bin", sst2["data_bin"],
                "--input", sst2["work"] / "dev.txt", "--table-dtype", "bfloat16"])
    assert json.loads(proc.stdout.strip().splitlines()[-1])["examples"] == 872
