"""The CUDA paths against the CPU: student hub, teacher, the DAN's fold, mixed_adam.

Marked ``gpu`` and skipped without a CUDA device (``pytest -m gpu`` runs only these).
"""

import copy
import json

import numpy as np
import pytest
import torch

from user_dir.inference.hub_interface import StudentHubInterface
from user_dir.inference.teacher import Teacher
from user_dir.models.dan import FeatureBasedLinearModel
from user_dir.preprocess.teacher_logits import teacher_logits_file

from conftest import REPO, TRAIN_FLAGS, run
from test_dan import cfg, make_dict, task
from test_mixed_adam import Tiny, batches, fairseq_opt, loss_fn

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def dan(sst2, tmp_path_factory):
    """A DAN student trained one epoch (on the GPU: fairseq-train takes it when present)."""
    save_dir = tmp_path_factory.mktemp("gpu_dan")
    run(["fairseq-train", sst2["data_bin"], *TRAIN_FLAGS, "--max-epoch", "1", "--save-dir", save_dir,
         "--no-epoch-checkpoints"])
    return {**sst2, "save_dir": save_dir}


def test_student_hub_on_cuda_predicts_as_on_cpu(dan, tmp_path):
    texts = [r[0] for r in dan["dev"]]
    args = (str(dan["save_dir"]), "checkpoint_best.pt", str(dan["data_bin"]))
    cpu = StudentHubInterface.from_pretrained(*args, device="cpu")
    gpu = StudentHubInterface.from_pretrained(*args, device="cuda")
    assert gpu.device.type == "cuda" and gpu.model.encoder.embed_tokens.weight.is_cuda
    assert gpu.model.folded_head is not None and gpu.model.folded_head == cpu.model.folded_head
    p_cpu, p_gpu = cpu.predict_proba(texts), gpu.predict_proba(texts)
    assert np.abs(p_cpu - p_gpu).max() < 1e-5
    clear = np.abs(p_cpu[:, 1] - 0.5) > 1e-4  # a near-tie may go either way
    assert (p_cpu.argmax(1) == p_gpu.argmax(1))[clear].all()
    summaries = {}
    for device in ("cpu", "cuda"):
        proc = run(["distill-predict", "--checkpoint", dan["save_dir"] / "checkpoint_best.pt", "--data-bin",
                    dan["data_bin"], "--input", dan["work"] / "dev.txt", "--device", device,
                    "--output", tmp_path / f"{device}.tsv"])
        summaries[device] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summaries["cpu"]["device"] == "cpu" and summaries["cuda"]["device"].startswith("cuda")
    assert summaries["cpu"]["examples"] == summaries["cuda"]["examples"] == len(texts)


def test_teacher_on_cuda_matches_cpu(finetuned_teacher, tmp_path):
    texts = finetuned_teacher["texts"] + ["", "a " * 600, ("good film", "bad film")]
    cpu = Teacher(str(finetuned_teacher["dir"]), device="cpu")
    gpu = Teacher(str(finetuned_teacher["dir"]), device="cuda")
    assert gpu.device.startswith("cuda") and next(gpu.model.parameters()).is_cuda
    expected = cpu.logits(texts, batch_tokens=512)
    assert np.abs(gpu.logits(texts, batch_tokens=512) - expected).max() < 1e-3
    # the tool: auto takes the GPU(s), local jobs spread over them
    src = tmp_path / "in.txt"
    src.write_text("".join(t + "\n" for t in finetuned_teacher["texts"]))
    one = teacher_logits_file(str(finetuned_teacher["dir"]), str(src), str(tmp_path / "one.npy"), shard_bytes=1500)
    two = teacher_logits_file(str(finetuned_teacher["dir"]), str(src), str(tmp_path / "two.npy"), shard_bytes=1500,
                              workers=2)
    assert one["devices"] == ["cuda:0"] and all(d.startswith("cuda:") for d in two["devices"])
    assert two["jobs"] == 2
    reference = cpu.logits(finetuned_teacher["texts"])
    for name in ("one", "two"):
        assert np.abs(np.load(tmp_path / f"{name}.npy") - reference).max() < 1e-3


@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_dan_folds_its_first_layer_on_cuda(mode):
    d = make_dict()
    model = FeatureBasedLinearModel.build_model(
        cfg(embed_bag_mode=mode, encoder_embed_dim=8, hidden_dim=6, head_layers=2, pooler_activation_fn="relu"),
        task(d))
    model.register_classification_head("h", num_classes=3)
    model.eval()
    padded = torch.tensor([[4, 5, 6], [7, d.pad(), d.pad()], [d.pad(), d.pad(), d.pad()]])
    flat, counts = torch.tensor([4, 5, 6, 7]), torch.tensor([3, 1, 0])
    with torch.no_grad():
        before, _ = model(padded, classification_head_name="h")
        gpu = copy.deepcopy(model).cuda()
        assert gpu.fold_first_layer("h", chunk_rows=7)  # several chunks of the table
        assert gpu.encoder.embed_tokens.weight.is_cuda and gpu.encoder.embed_tokens.weight.shape == (len(d), 6)
        after, _ = gpu(padded.cuda(), classification_head_name="h")
        pooled = gpu.classification_heads["h"](gpu.encoder.pool_flat(flat.cuda(), counts.cuda()))
    assert torch.allclose(before, after.cpu(), atol=1e-5)
    assert torch.allclose(before, pooled.cpu(), atol=1e-5)


def test_mixed_adam_steps_on_cuda_match_cpu():
    cpu, gpu = Tiny(), Tiny().cuda()  # Tiny seeds itself: the same start
    opts = {"cpu": fairseq_opt(cpu), "cuda": fairseq_opt(gpu)}
    assert [type(o).__name__ for _, o in opts["cuda"].optimizer.parts] == ["AdamW", "SparseAdam"]
    norms = {"cpu": [], "cuda": []}
    for ids in batches(8):
        for device, model in (("cpu", cpu), ("cuda", gpu)):
            opt = opts[device]
            opt.zero_grad()
            loss_fn(model, ids.to(device)).backward()
            norms[device].append(float(opt.clip_grad_norm(1.0)))  # sparse gradient coalesced on the GPU
            opt.step()
    assert gpu.emb.weight.is_cuda and gpu.emb.weight.grad.is_sparse
    assert np.allclose(norms["cpu"], norms["cuda"], rtol=1e-5)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        assert torch.allclose(a, b.cpu(), atol=1e-6)


def test_layerwise_kd_with_the_online_teacher_on_cuda_matches_cpu(finetuned_teacher):
    """The teacher follows the student to the GPU; the loss is the CPU's (fp32), and --fp16 runs."""
    from test_online_teacher import a_batch, setup

    from user_dir.compress.encoder_checkpoint import arch_flags, load_encoder

    ckpt = finetuned_teacher["dir"] / "checkpoint_best.pt"
    data = finetuned_teacher["work"] / "data-bin"
    student, _, args = load_encoder(str(ckpt))
    flags = arch_flags(args) + ["--dropout", "0", "--attention-dropout", "0"]
    losses = {}
    for device in ("cpu", "cuda"):
        task, model, targs = setup(data, ckpt, flags, "--hidden-weight", "1", "--attention-weight", "1",
                                   "--layer-map", "0,2,3,4,5,6,6")
        model.load_state_dict(student.state_dict())
        model.to(device).eval()
        criterion = task.build_criterion(targs)
        sample = a_batch(task)
        sample = {k: (v.to(device) if torch.is_tensor(v) else {a: b.to(device) for a, b in v.items()}
                      if isinstance(v, dict) else v) for k, v in sample.items()}
        loss, _, log = criterion(model, sample)
        assert next(task.online_teacher.model.parameters()).device.type == device
        losses[device] = (loss.item(), log["hidden_loss"].item(), log["attn_loss"].item())
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-3)
    proc = run(["fairseq-train", data, "--user-dir", REPO / "user_dir", "--task", "glue_distillation", "--num-classes", "2",
                "--init-token", "0", *arch_flags(args), "--finetune-from-model", ckpt, "--teacher-checkpoint", ckpt,
                "--criterion", "layerwise_distillation", "--fp16", "--optimizer", "adam", "--lr", "1e-5",
                "--batch-size", "16", "--max-update", "3", "--no-save", "--num-workers", "0"])
    assert "done training" in proc.stdout + proc.stderr
