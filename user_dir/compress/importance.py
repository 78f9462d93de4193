"""Taylor importance of attention heads and FFN neurons (ROSITA; Molchanov et al. 2019).

For a weight w, with g_b = dL_b/dw the gradient of batch b's loss (its mean
over the batch's examples)::

    score(w) = |w| * sum_b |g_b|

and a structure's score is the sum over its weights: a head's over its
columns of the attention output projection (``out_proj``), an FFN neuron's
over its row of ``fc1`` and its column of ``fc2``.  The model is in eval
mode (no dropout) and its weights are never updated.  The loss is the
cross-entropy on gold labels, or the distillation loss (soft cross-entropy at
T, or T^2-scaled KL) against a teacher.

The file ``distill-importance`` writes (JSON, read by ``distill-prune``)::

    {"format": "distill-importance/1",
     "checkpoint": PATH, "checkpoint_sha256": HEX,     # the model scored
     "loss": "ce" | "soft_ce" | "kl", "split": NAME, "sentences": N, "batches": N,
     "heads": [[score of head 0, ...] per layer],      # layer order of the checkpoint
     "ffn":   [[score of neuron 0, ...] per layer]}
"""

import json
import logging
from typing import Callable, Iterable, Sequence, Tuple

import torch

from ..fileio import atomic_output, check_input_file

logger = logging.getLogger(__name__)
FORMAT = "distill-importance/1"


def tracked_weights(model):
    """(out_proj, fc1, fc2) weights of each encoder layer."""
    return [(layer.self_attn.out_proj.weight, layer.fc1.weight, layer.fc2.weight)
            for layer in model.encoder.sentence_encoder.layers]


def structure_scores(model) -> list:
    """``[(head scores [H], FFN neuron scores [F]) per layer]``: sum of |w * w.grad| per structure.

    The scored weights' gradients must be set (one batch's, or one update's).  With the weights
    fixed, summing these over batches is |w| * sum_b |g_b|; iterative pruning sums them over the
    updates of a period, each with the weights of its step.
    """
    out = []
    for layer in model.encoder.sentence_encoder.layers:
        attn = layer.self_attn
        w_out, w1, w2 = attn.out_proj.weight, layer.fc1.weight, layer.fc2.weight
        per_col = (w_out.detach() * w_out.grad).abs().sum(0)  # [H * head_dim]
        heads = per_col.view(attn.num_heads, attn.head_dim).sum(-1)
        ffn = (w1.detach() * w1.grad).abs().sum(1) + (w2.detach() * w2.grad).abs().sum(0)
        out.append((heads, ffn))
    return out


def score_batches(model, batches: Iterable, loss_fn: Callable, scored: Sequence[torch.Tensor],
                  collect: Callable, progress=None) -> Tuple[int, int]:
    """For each batch: ``loss_fn(model, sample).backward()`` with gradients for ``scored`` alone
    (cleared before each batch), then ``collect()``.  The model is in eval mode (no dropout) and its
    weights are never updated; its modes and gradients are restored after.  (batches, sentences)."""
    was_training = model.training
    model.eval()
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for t in scored:
        t.requires_grad_(True)
    n_batches = n_sentences = 0
    try:
        for sample in batches:
            for t in scored:
                t.grad = None
            loss_fn(model, sample).backward()
            collect()
            n_batches += 1
            n_sentences += sample["nsentences"]
            if progress is not None:
                progress.update(1)
    finally:
        for p, flag in flags.items():
            p.grad = None
            p.requires_grad_(flag)
        model.train(was_training)
    if not n_batches:
        raise ValueError("no batches to score: the split is empty")
    return n_batches, int(n_sentences)


def taylor_importance(model, batches: Iterable, loss_fn: Callable, progress=None) -> dict:
    """``{"heads": [[...]], "ffn": [[...]], "batches": n, "sentences": n}`` for ``model``.

    ``loss_fn(model, sample)`` returns the batch's (mean) loss.
    """
    acc = []

    def collect():
        scores = structure_scores(model)
        acc[:] = scores if not acc else [(h + sh, f + sf) for (h, f), (sh, sf) in zip(acc, scores)]

    weights = [w for layer in tracked_weights(model) for w in layer]
    n_batches, n_sentences = score_batches(model, batches, loss_fn, weights, collect, progress)
    return {"heads": [h.tolist() for h, _ in acc], "ffn": [f.tolist() for _, f in acc],
            "batches": n_batches, "sentences": n_sentences}


def save_importance(path: str, scores: dict, **meta) -> None:
    with atomic_output(path, "w") as f:
        json.dump({"format": FORMAT, **meta, **scores}, f)
        f.write("\n")


def load_importance(path: str) -> dict:
    check_input_file(path, "importance scores")
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path} is not valid JSON ({e}): truncated or corrupted?") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file (from distill-importance)")
    return data


def score_checkpoint(checkpoint: str, data: str, output: str, split: str = "train", loss: str = "ce",
                     teacher_checkpoint: str = "", distillation_target: bool = False,
                     temperature: float = 1.0, batch_size: int = 32, max_sentences: int = 0,
                     method: str = "taylor") -> dict:
    """Score ``checkpoint``'s heads and FFN neurons on ``data``'s ``split``; write ``output``.

    ``method``: ``taylor`` (ROSITA, above) or ``mask`` (MiniDisc: summed |d loss / d mask| of head
    and neuron masks, normalised per layer; ``compress/sparsity.py``)."""
    from tqdm import tqdm

    from ..criterions.distillation_losses import cross_entropy, prediction_loss
    from ..tasks.glue_distillation import glue_task
    from .encoder_checkpoint import file_digest, load_encoder

    if method not in ("taylor", "mask"):
        raise ValueError(f"--method {method!r}: taylor (ROSITA) or mask (MiniDisc)")
    if loss not in ("ce", "soft_ce", "kl"):
        raise ValueError(f"--loss {loss!r}: ce (gold labels), soft_ce or kl (against a teacher)")
    if loss != "ce" and not (teacher_checkpoint or distillation_target):
        raise ValueError(f"--loss {loss} needs a teacher: --teacher-checkpoint or --distillation-target")
    model, state, args = load_encoder(checkpoint)
    tcfg = state["cfg"]["task"]
    heads = [k for k in state["model"] if k.endswith(".out_proj.weight") and "classification_heads." in k]
    if not heads:
        raise ValueError(f"{checkpoint} has no classification head: score a fine-tuned classifier")
    head = heads[0].split("classification_heads.")[1].split(".")[0]
    num_classes = state["model"][heads[0]].shape[0]
    task = glue_task(data, num_classes, init_token=tcfg.get("init_token"),
                     separator_token=tcfg.get("separator_token"),
                     max_positions=min(int(tcfg.get("max_positions") or 512), args.max_positions),
                     teacher_checkpoint=teacher_checkpoint, distillation_target=distillation_target,
                     no_shuffle=True, classification_head_name=head)
    if len(task.source_dictionary) != model.encoder.sentence_encoder.embed_tokens.num_embeddings:
        raise ValueError(f"{data}/input0/dict.txt has {len(task.source_dictionary)} entries, {checkpoint}'s "
                         f"embedding {model.encoder.sentence_encoder.embed_tokens.num_embeddings}: "
                         f"binarize with the model's dictionary")
    dataset = task.load_dataset(split)
    if loss == "ce" and "target" not in dataset[0]:
        raise ValueError(f"--loss ce needs gold labels for {split} ({data}/label/{split}.bin)")
    n = len(dataset) if not max_sentences else min(max_sentences, len(dataset))
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]

    def samples():
        for idx in batches:
            yield dataset.collater([dataset[i] for i in idx])

    def loss_fn(m, sample):
        from ..models.transformer_outputs import classifier_outputs

        logits = classifier_outputs(m, sample["net_input"]["src_tokens"], head).logits
        if loss == "ce":
            return cross_entropy(logits, sample["target"]).mean
        return prediction_loss(loss, logits, task.teacher_logits(sample), temperature).mean

    with tqdm(total=len(batches), desc="importance", unit="batch") as bar:
        if method == "mask":
            from .sparsity import mask_importance

            scores = mask_importance(model, samples(), loss_fn, progress=bar)
        else:
            scores = taylor_importance(model, samples(), loss_fn, progress=bar)
    save_importance(output, scores, checkpoint=checkpoint, checkpoint_sha256=file_digest(checkpoint),
                    loss=loss, split=split, method=method)
    logger.info("scored %d heads and %d FFN neurons on %d %s sentences -> %s",
                sum(map(len, scores["heads"])), sum(map(len, scores["ffn"])), scores["sentences"], split, output)
    return scores
