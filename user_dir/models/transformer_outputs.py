"""What a RoBERTa-style classifier computes inside: logits, hidden states, attention maps.

``classifier_outputs(model, src_tokens, head, hidden=..., attention=...)``
runs fairseq's ``RobertaModel`` (``hf_bert``, ``pruned_roberta``) once and
returns a ``TransformerOutputs``, batch first:

* ``hidden_states[0]`` is the embedding output (after its LayerNorm, padding
  zeroed), ``hidden_states[i]`` the output of layer i: ``[B, T, D]`` each;
* ``attentions[i - 1]`` the attention probabilities of layer i, ``[B, H, T, T]``,
  taken with forward hooks (fairseq's encoder layers ask for no weights);
* ``padding_mask`` ``[B, T]``, True at padding.

The same function serves the student (with gradients) and the frozen teacher
(under ``torch.no_grad``), so a criterion compares like with like.  Offline
teacher logits come as a ``TransformerOutputs`` with logits only.
"""

from dataclasses import dataclass
from typing import List, Optional

from torch import Tensor


@dataclass
class TransformerOutputs:
    logits: Tensor
    hidden_states: Optional[List[Tensor]] = None
    attentions: Optional[List[Tensor]] = None
    padding_mask: Optional[Tensor] = None


def _ask_for_head_weights(module, args, kwargs):
    kwargs["need_weights"] = True
    kwargs["need_head_weights"] = True
    return args, kwargs


def classifier_outputs(model, src_tokens: Tensor, head: str, hidden: bool = False,
                       attention: bool = False) -> TransformerOutputs:
    encoder = model.encoder.sentence_encoder
    maps: List[Tensor] = []
    handles, fused = [], []
    if attention:
        for layer in encoder.layers:
            attn = layer.self_attn
            if not attn.skip_embed_dim_check:  # torch's fused kernel averages heads: fairseq's own path
                attn.skip_embed_dim_check = True
                fused.append(attn)
            handles.append(attn.register_forward_pre_hook(_ask_for_head_weights, with_kwargs=True))
            # fairseq returns [H, B, T, T]
            handles.append(attn.register_forward_hook(lambda m, a, out: maps.append(out[1].transpose(0, 1))))
    try:
        logits, extra = model(src_tokens, features_only=True, return_all_hiddens=hidden,
                              classification_head_name=head)
    finally:
        for h in handles:
            h.remove()
        for attn in fused:
            attn.skip_embed_dim_check = False
    states = [s.transpose(0, 1) for s in extra["inner_states"]] if hidden else None
    return TransformerOutputs(logits=logits, hidden_states=states, attentions=maps if attention else None,
                              padding_mask=src_tokens.eq(encoder.padding_idx))


def is_transformer_classifier(model) -> bool:
    return hasattr(getattr(model, "encoder", None), "sentence_encoder") and hasattr(model, "classification_heads")


def transformer_shape(model) -> dict:
    """Depth, width and heads per layer: what a layer-wise criterion checks its map against."""
    enc = model.encoder.sentence_encoder
    return {"layers": len(enc.layers), "dim": enc.embed_tokens.embedding_dim,
            "heads": [layer.self_attn.num_heads for layer in enc.layers]}
