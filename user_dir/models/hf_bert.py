"""``hf_bert``: fairseq's RoBERTa that computes what an imported Hugging Face BERT computes.

Structurally BERT and fairseq's RoBERTa encoder are the same post-LayerNorm
transformer.  Two things differ and are carried here and in
``distill-import-hf``: BERT's LayerNorm epsilon (1e-12, against fairseq's
fixed 1e-5: about 1e-3 of difference in the outputs) is a model flag saved
with the checkpoint, and BERT's token-type embedding is folded into the
position embeddings by the importer.  A RoBERTa whose encoder does not use
gelu keeps gelu in its MLM head (``--lm-head-activation-fn``), as Hugging
Face's does.
"""

import torch.nn as nn
from fairseq import utils
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import RobertaModel
from fairseq.models.roberta.model import base_architecture as roberta_base_architecture


def set_layer_norm_eps(module: nn.Module, eps: float) -> None:
    # duck-typed: with apex on GPU, fairseq's LayerNorm() is a FusedLayerNorm, not an nn.LayerNorm
    for m in module.modules():
        if hasattr(m, "normalized_shape") and hasattr(m, "eps"):
            m.eps = eps


@register_model("hf_bert")
class HFBertModel(RobertaModel):
    @staticmethod
    def add_args(parser):
        RobertaModel.add_args(parser)
        parser.add_argument("--layer-norm-eps", type=float, metavar="EPS",
                            help="epsilon of every LayerNorm, carried from the Hugging Face config "
                                 "(BERT: 1e-12)")
        parser.add_argument("--lm-head-activation-fn", choices=utils.get_available_activation_fns(),
                            help="activation of the masked-LM head (default: --activation-fn)")

    @classmethod
    def build_model(cls, args, task):
        hf_bert_base(args)
        model = super().build_model(args, task)
        set_layer_norm_eps(model, args.layer_norm_eps)
        if args.lm_head_activation_fn:
            model.encoder.lm_head.activation_fn = utils.get_activation_fn(args.lm_head_activation_fn)
        return model


@register_model_architecture("hf_bert", "hf_bert")
def hf_bert_base(args):
    """BERT-base sizes; distill-import-hf writes the flags of the imported model."""
    args.layer_norm_eps = getattr(args, "layer_norm_eps", 1e-12)
    args.lm_head_activation_fn = getattr(args, "lm_head_activation_fn", None)
    roberta_base_architecture(args)
