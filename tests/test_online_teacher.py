"""The teacher inside training: frozen, outside the student, its outputs through the task; the
layerwise_distillation criterion's terms and refusals, in process on the MiniLM teacher."""

import shutil
import warnings

import pytest
import torch

from conftest import REPO

from user_dir.compress.encoder_checkpoint import load_encoder
from user_dir.tasks.glue_distillation import glue_task

HEAD = "sentence_classification_head"


def parse(data, *flags):
    from fairseq import options

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return options.parse_args_and_arch(options.get_training_parser(), [
            str(data), "--user-dir", str(REPO / "user_dir"), "--task", "glue_distillation", "--num-classes", "2",
            "--init-token", "0", "--criterion", "layerwise_distillation", *map(str, flags)])


def setup(data, teacher, model_flags, *criterion_flags):
    """task, student, criterion as fairseq-train builds them."""
    from fairseq import tasks

    args = parse(data, "--teacher-checkpoint", teacher, *model_flags, *criterion_flags)
    task = tasks.setup_task(args)
    model = task.build_model(args)
    return task, model, args


def a_batch(task, n=6):
    task.load_dataset("valid")
    ds = task.dataset("valid")
    return ds.collater([ds[i] for i in range(n)])


@pytest.fixture(scope="module")
def teacher_setup(finetuned_teacher):
    ckpt = finetuned_teacher["dir"] / "checkpoint_best.pt"
    data = finetuned_teacher["work"] / "data-bin"
    model_args = load_encoder(str(ckpt))[2]
    from user_dir.compress.encoder_checkpoint import arch_flags

    return {"ckpt": ckpt, "data": data, "arch": arch_flags(model_args)}


def test_copy_of_the_teacher_has_zero_layer_losses(teacher_setup):
    """A student equal to the teacher: hidden and attention terms 0, soft CE = the teacher's entropy."""
    s = teacher_setup
    task, model, args = setup(s["data"], s["ckpt"], s["arch"], "--hidden-weight", "1", "--attention-weight", "1",
                              "--layer-map", "bottom", "--dropout", "0", "--attention-dropout", "0")
    model.load_state_dict(load_encoder(str(s["ckpt"]))[0].state_dict())
    model.eval()
    criterion = task.build_criterion(args)
    sample = a_batch(task)
    loss, size, log = criterion(model, sample)
    assert size == 6 and abs(log["hidden_loss"].item()) < 1e-8 and abs(log["attn_loss"].item()) < 1e-8
    t = task.teacher_outputs(sample).logits
    p = t.softmax(-1)
    entropy = -(p * p.log()).sum()
    assert log["kd_loss"].item() == pytest.approx(entropy.item(), rel=1e-4)
    assert log["nagree"].item() == 6
    # the teacher: frozen, eval mode, not a part of the student, no gradient after backward
    model.train()
    loss, _, _ = criterion(model, sample)
    loss.backward()
    teacher = task.online_teacher.model
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert not any(p is q for p in teacher.parameters() for q in model.parameters())
    assert any(p.grad is not None for p in model.parameters())


def test_width_mismatch_needs_a_projection(teacher_setup):
    s = teacher_setup
    narrow = ["--arch", "hf_bert", "--encoder-layers", "2", "--encoder-embed-dim", "32",
              "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "4", "--max-positions", "512"]
    task, model, args = setup(s["data"], s["ckpt"], narrow)
    with pytest.raises(ValueError, match="width is 32 and the teacher's 384: pass --hidden-projection"):
        task.build_criterion(args)
    args = parse(s["data"], "--teacher-checkpoint", s["ckpt"], *narrow, "--hidden-projection")
    criterion = task.build_criterion(args)
    assert criterion.mapping == [0, 3, 6]  # drop rule, 6 -> 2: uniform skip
    loss, _, log = criterion(model, a_batch(task))
    loss.backward()
    assert criterion.projection.weight.grad is not None and log["hidden_loss"] > 0
    # fairseq restores the criterion's state with the model: a checkpoint without any (a pruned
    # model, --finetune-from-model) keeps the fresh projection; its own state comes back
    fresh = criterion.projection.weight.detach().clone()
    criterion.load_state_dict(None)
    assert torch.equal(criterion.projection.weight, fresh)
    saved = {k: v.clone() * 2 for k, v in criterion.state_dict().items()}
    criterion.load_state_dict(saved)
    assert torch.equal(criterion.projection.weight, saved["projection.weight"])
    args = parse(s["data"], "--teacher-checkpoint", s["ckpt"], *narrow, "--hidden-projection",
                 "--layer-map", "0,3,7")
    with pytest.raises(ValueError, match="names teacher states \\[7\\]"):
        task.build_criterion(args)
    args = parse(s["data"], "--teacher-checkpoint", s["ckpt"], *narrow, "--hidden-projection",
                 "--attention-weight", "1")
    with pytest.raises(ValueError, match="4 attention heads, teacher layer 3 has 12"):
        task.build_criterion(args)


def test_teacher_refusals(teacher_setup, tmp_path):
    s = teacher_setup
    # a student data-bin in another dictionary
    other = tmp_path / "bin"
    shutil.copytree(s["data"], other)
    with open(other / "input0" / "dict.txt", "a") as f:
        f.write("newtoken 1\n")
    with pytest.raises(ValueError, match="dictionary .* differs from the student's .*bin/input0/dict.txt"):
        glue_task(str(other), 2, init_token=0, teacher_checkpoint=str(s["ckpt"])).load_teacher()
    # the teacher's input format (<s> first) must be the student's
    with pytest.raises(ValueError, match="--init-token 0, this task has None"):
        glue_task(str(s["data"]), 2, teacher_checkpoint=str(s["ckpt"])).load_teacher()
    with pytest.raises(ValueError, match="reads at most 512 tokens, the student's inputs have up to "
                                         "--max-positions 600"):
        glue_task(str(s["data"]), 2, init_token=0, max_positions=600, teacher_checkpoint=str(s["ckpt"])).load_teacher()
    with pytest.raises(FileNotFoundError, match="teacher checkpoint not found"):
        glue_task(str(s["data"]), 2, init_token=0, teacher_checkpoint=str(tmp_path / "none")).load_teacher()
    # hidden states need the teacher itself, not offline logits
    args = parse(s["data"], *s["arch"])
    from fairseq import tasks

    task = tasks.setup_task(args)
    task.build_model(args)
    with pytest.raises(ValueError, match="need the teacher's hidden states: pass --teacher-checkpoint"):
        task.build_criterion(args)
    # a BiLSTM cannot read --init-token's joined pairs; a transformer needs <s>
    args = parse(s["data"], *s["arch"])
    args.init_token = None
    with pytest.raises(ValueError, match="pass --init-token 0"):
        tasks.setup_task(args).build_model(args)


def test_offline_logits_serve_the_criterion_as_the_online_teacher(teacher_setup, tmp_path):
    """A criterion does not care where the teacher's outputs come from: the teacher's logits saved
    as DATA/distill/valid.npy give the prediction term the online teacher gives."""
    from user_dir.data.teacher_targets import save_teacher_targets

    s = teacher_setup
    online, model, args = setup(s["data"], s["ckpt"], s["arch"], "--hidden-weight", "0", "--no-shuffle")
    model.eval()
    online.load_dataset("valid")
    ds = online.dataset("valid")
    rows = [ds[i] for i in range(len(ds))]
    logits = online.teacher_outputs(ds.collater(rows)).logits
    order = torch.tensor([r["id"] for r in rows])
    data = tmp_path / "bin"
    shutil.copytree(s["data"], data)
    array = torch.empty_like(logits)
    array[order] = logits
    save_teacher_targets(str(data / "distill" / "valid.npy"), array.numpy(), ["0", "1"])
    offline_args = parse(data, *s["arch"], "--distillation-target", "--hidden-weight", "0", "--no-shuffle")
    from fairseq import tasks

    offline = tasks.setup_task(offline_args)
    offline.build_model(offline_args)
    sample = a_batch(offline)
    with pytest.raises(ValueError, match="offline logits have neither"):
        offline.teacher_outputs(sample, hidden=True)
    got = [task.build_criterion(a)(model, b)[2] for task, a, b in
           ((online, args, a_batch(online)), (offline, offline_args, sample))]
    assert got[0]["kd_loss"].item() == pytest.approx(got[1]["kd_loss"].item(), rel=1e-5)
    assert got[0]["nagree"] == got[1]["nagree"]
