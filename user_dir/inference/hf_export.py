"""A transformer student back to a Hugging Face BERT directory (the inverse of distill-import-hf).

``transformers`` loads the directory with ``AutoModelForSequenceClassification``
(and ``AutoModelForMaskedLM`` when the student has its LM head) and computes
what the fairseq model computes.  On the way:

* vocabulary: fairseq's ``<s> <pad> </s> <unk> <mask>`` go back to BERT's
  ``[CLS] [PAD] [SEP] [UNK] [MASK]``; rows keep the fairseq order and
  ``vocab.txt`` is written in that order, so token ids differ from the
  original model's but the tokenizer and the weights agree;
* positions: fairseq's rows from ``padding_idx + 1`` are BERT's from 0, and
  the token-type embedding is zero (the importer folded BERT's type 0 into the
  positions; fairseq gives both texts of a pair the same type);
* heads: ``transformers`` 5 no longer prunes heads (``pruned_heads`` is
  gone), so a layer that kept h of H heads gets H - h heads of zeros back:
  zero query, key and value rows and zero output-projection columns add
  exactly nothing, so the outputs are the pruned model's (the saving stays in
  fairseq and ``distill-predict``; ``config.json`` records the kept heads as
  ``distill_kept_heads``).  FFN widths must agree across layers
  (``intermediate_size`` is one number: refused otherwise, naming the layer);
* a factorised embedding is multiplied out (vocab x r @ r x d);
* the classification head: fairseq's dense + tanh on ``<s>`` is BERT's pooler,
  its ``out_proj`` the classifier.
"""

import json
import logging
import os
from typing import Optional

import torch

from ..encoders.wordpiece import FAIRSEQ_TO_BERT
from ..fileio import atomic_output
from ..models.pruned_roberta import FactorizedEmbedding, layer_shapes

logger = logging.getLogger(__name__)
MARKER = "model.safetensors"
ACTIVATIONS = {"gelu": "gelu", "gelu_accurate": "gelu_new", "relu": "relu", "tanh": "tanh"}


def bert_state(model, head: Optional[str], num_classes: int) -> dict:
    enc = model.encoder.sentence_encoder
    emb = enc.embed_tokens
    words = emb.full_weight() if isinstance(emb, FactorizedEmbedding) else emb.weight
    pos = enc.embed_positions.weight[enc.padding_idx + 1:]
    d = words.shape[1]
    out = {
        "bert.embeddings.word_embeddings.weight": words,
        "bert.embeddings.position_embeddings.weight": pos,
        "bert.embeddings.token_type_embeddings.weight": torch.zeros(2, d),
        "bert.embeddings.LayerNorm.weight": enc.layernorm_embedding.weight,
        "bert.embeddings.LayerNorm.bias": enc.layernorm_embedding.bias,
    }
    names = {"self_attn.q_proj": "attention.self.query", "self_attn.k_proj": "attention.self.key",
             "self_attn.v_proj": "attention.self.value", "self_attn.out_proj": "attention.output.dense",
             "self_attn_layer_norm": "attention.output.LayerNorm", "fc1": "intermediate.dense",
             "fc2": "output.dense", "final_layer_norm": "output.LayerNorm"}
    for i, layer in enumerate(enc.layers):
        for src, dst in names.items():
            module = layer.get_submodule(src)
            for p in ("weight", "bias"):
                out[f"bert.encoder.layer.{i}.{dst}.{p}"] = _full_heads(src, p, getattr(module, p), d)
    if head is not None:
        h = model.classification_heads[head]
        out.update({"bert.pooler.dense.weight": h.dense.weight, "bert.pooler.dense.bias": h.dense.bias,
                    "classifier.weight": h.out_proj.weight, "classifier.bias": h.out_proj.bias})
    return {k: v.detach().float().contiguous().clone() for k, v in out.items()}


def _full_heads(name: str, kind: str, value: torch.Tensor, d: int) -> torch.Tensor:
    """Pad a pruned attention projection to the full width d with zeros (heads that add nothing)."""
    value = value.detach()
    if name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj") and value.shape[0] < d:
        pad = value.new_zeros((d - value.shape[0],) + tuple(value.shape[1:]))
        return torch.cat([value, pad], 0)
    if name == "self_attn.out_proj" and kind == "weight" and value.shape[1] < d:
        return torch.cat([value, value.new_zeros(value.shape[0], d - value.shape[1])], 1)
    return value


def mlm_state(model) -> Optional[dict]:
    lm = getattr(model.encoder, "lm_head", None)
    if lm is None:
        return None
    return {k: v.detach().float().contiguous().clone() for k, v in {
        "cls.predictions.transform.dense.weight": lm.dense.weight,
        "cls.predictions.transform.dense.bias": lm.dense.bias,
        "cls.predictions.transform.LayerNorm.weight": lm.layer_norm.weight,
        "cls.predictions.transform.LayerNorm.bias": lm.layer_norm.bias,
        "cls.predictions.decoder.weight": lm.weight,
        "cls.predictions.bias": lm.bias,
        "cls.predictions.decoder.bias": lm.bias,  # transformers 5 adds this one (tied to .bias when tied)
    }.items()}


def bert_config(model, args, num_classes: int, classes, has_head: bool) -> dict:
    shapes = layer_shapes(model)
    ffn = shapes["layer_ffn_dims"]
    for i, h in enumerate(shapes["layer_heads"]):
        if h == 0:
            raise ValueError(f"layer {i} keeps no attention head (its sublayer is skipped): a Hugging Face BERT "
                             f"layer always has one")
    for i, f in enumerate(ffn):
        if f != ffn[0]:
            raise ValueError(f"layer {i} has FFN width {f}, layer 0 {ffn[0]}: a Hugging Face BERT config has one "
                             f"intermediate_size; prune every layer to the same --ffn-dim")
    act = args.activation_fn
    if act not in ACTIVATIONS:
        raise ValueError(f"activation {act!r} has no Hugging Face equivalent")
    lm_act = getattr(args, "lm_head_activation_fn", None)
    if getattr(model.encoder, "lm_head", None) is not None and lm_act and lm_act != act:
        raise ValueError(f"the LM head uses {lm_act}, the encoder {act}: BERT's head uses hidden_act for both")
    if has_head and getattr(args, "pooler_activation_fn", "tanh") != "tanh":
        raise ValueError("BERT's pooler is tanh; this head uses " + args.pooler_activation_fn)
    heads = args.encoder_attention_heads
    enc = model.encoder.sentence_encoder
    config = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": enc.embed_tokens.num_embeddings,
        "hidden_size": enc.embed_tokens.embedding_dim,
        "num_hidden_layers": shapes["encoder_layers"],
        "num_attention_heads": heads,
        "intermediate_size": ffn[0],
        "hidden_act": ACTIVATIONS[act],
        "hidden_dropout_prob": float(getattr(args, "dropout", 0.1)),
        "attention_probs_dropout_prob": float(getattr(args, "attention_dropout", 0.1)),
        "max_position_embeddings": enc.embed_positions.weight.shape[0] - enc.padding_idx - 1,
        "type_vocab_size": 2,
        "layer_norm_eps": float(getattr(args, "layer_norm_eps", 1e-5)),
        "pad_token_id": enc.padding_idx,
        "distill_kept_heads": {str(i): h for i, h in enumerate(shapes["layer_heads"])},
        "tie_word_embeddings": not getattr(args, "untie_weights_roberta", False),
        "num_labels": num_classes,
        "id2label": {str(i): c for i, c in enumerate(classes)},
        "label2id": {c: i for i, c in enumerate(classes)},
    }
    return config


def vocab_lines(dictionary) -> list:
    """BERT's token names in fairseq row order (rows past the dictionary: unused tokens)."""
    return [FAIRSEQ_TO_BERT.get(s, s) for s in dictionary.symbols]


def export_hf(checkpoint: str, data: str, output_dir: str) -> dict:
    """Write ``output_dir`` (config.json, vocab.txt, tokenizer files, model.safetensors last)."""
    from fairseq import checkpoint_utils

    from ..compress.encoder_checkpoint import as_pruned_args, model_args
    from .hub_interface import StudentHubInterface
    from .teacher import Teacher

    saved_cfg = checkpoint_utils.load_checkpoint_to_cpu(checkpoint, load_on_all_ranks=True)["cfg"]
    if (saved_cfg["task"] or {}).get("_name") == "masked_lm_distillation":
        return _export_masked_lm(checkpoint, data, output_dir, saved_cfg)
    if (saved_cfg["task"] or {}).get("_name") == "sentence_prediction":
        # fairseq's own classifiers: a fine-tuned teacher, or a model the compression tools wrote
        # in its configuration (a MiniDisc assistant, a densified sparsity)
        t = Teacher(os.path.dirname(checkpoint) or ".", os.path.basename(checkpoint), device="cpu", data=data)
        model, task, cfg, head, classes = t.model, t.task, t.cfg, t.head, list(t.classes)
        pairs = os.path.exists(os.path.join(data, "input1", "dict.txt"))
    else:
        hub = StudentHubInterface.from_pretrained(os.path.dirname(checkpoint) or ".", os.path.basename(checkpoint),
                                                  data)
        model, task, cfg, head, classes = hub.model, hub.task, hub.cfg, hub.head, list(hub.task.classes)
        pairs = len(task.input_keys) > 1
    args = as_pruned_args(model_args(cfg), layer_shapes(model))  # the loaded model's, not a second load
    config = bert_config(model, args, len(classes), classes, True)  # first: it refuses what BERT cannot express
    state = bert_state(model, head, len(classes))
    d = task.source_dictionary
    if pairs and task.cfg.separator_token is not None:
        raise ValueError(f"the student joins pairs with --separator-token {task.cfg.separator_token} "
                         f"(<s> a </s> </s> b </s>); a BERT tokenizer gives [CLS] a [SEP] b [SEP]: train "
                         f"without --separator-token to export")
    if task.cfg.init_token != d.bos():
        raise ValueError(f"the student reads --init-token {task.cfg.init_token}; BERT's [CLS] is <s> ({d.bos()})")
    return _write(checkpoint, data, output_dir, model, state, config, d, cfg.bpe)


def _export_masked_lm(checkpoint: str, data: str, output_dir: str, saved_cfg) -> dict:
    """A task-agnostic student (masked_lm_distillation): its encoder and LM head, no classifier."""
    from fairseq.data import Dictionary

    from ..compress.encoder_checkpoint import load_encoder

    model, _, args = load_encoder(checkpoint)
    if getattr(model.encoder, "lm_head", None) is None:
        raise ValueError(f"{checkpoint} has no masked-LM head to export")
    path = os.path.join(data, "dict.txt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"dictionary not found: {path} (the data-bin the student was distilled on)")
    config = bert_config(model, args, 2, ["0", "1"], False)  # AutoModelForMaskedLM reads no labels
    return _write(checkpoint, data, output_dir, model, bert_state(model, None, 0), config, Dictionary.load(path),
                  saved_cfg.get("bpe"))


def _write(checkpoint, data, output_dir, model, state, config, d, bpe_cfg) -> dict:
    from safetensors.torch import save_file

    lm = mlm_state(model)
    if lm is not None:
        state.update(lm)
        if config["tie_word_embeddings"]:
            del state["cls.predictions.decoder.weight"]
    if len(d) != config["vocab_size"]:
        raise ValueError(f"{data}'s dict.txt has {len(d)} entries, the model's embedding {config['vocab_size']}")
    os.makedirs(output_dir, exist_ok=True)
    marker = os.path.join(output_dir, MARKER)
    if os.path.exists(marker):
        os.unlink(marker)
    with atomic_output(os.path.join(output_dir, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(vocab_lines(d)) + "\n")
    with atomic_output(os.path.join(output_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": _lowercase(bpe_cfg),
                   "model_max_length": config["max_position_embeddings"]}, f, indent=1)
    with atomic_output(os.path.join(output_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    tmp = marker + f".{os.getpid()}.tmp"
    save_file(state, tmp, metadata={"format": "pt"})
    os.replace(tmp, marker)
    summary = {"output": output_dir, "layers": config["num_hidden_layers"], "kept_heads": shapes_heads(config),
               "intermediate_size": config["intermediate_size"], "has_mlm_head": lm is not None,
               "parameters": sum(v.numel() for v in state.values())}
    logger.info("exported %s -> %s", checkpoint, output_dir)
    return summary


def shapes_heads(config: dict) -> list:
    return [config["distill_kept_heads"][str(i)] for i in range(config["num_hidden_layers"])]


def _lowercase(bpe_cfg) -> bool:
    """Whether the student's WordPiece lower-cases (its tokenizer.json says; a vocab.txt: the flag)."""
    if isinstance(bpe_cfg, dict):  # a checkpoint's config as saved
        from types import SimpleNamespace

        bpe_cfg = SimpleNamespace(**bpe_cfg)
    path = getattr(bpe_cfg, "wordpiece_vocab", "") if bpe_cfg is not None else ""
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    if path.endswith(".json") and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            normalizer = json.load(f).get("normalizer") or {}
        return bool(normalizer.get("lowercase", False))
    return bool(getattr(bpe_cfg, "wordpiece_lowercase", True))
