"""``hf_bert``: fairseq's RoBERTa that computes what an imported Hugging Face BERT computes.

Structurally BERT and fairseq's RoBERTa encoder are the same post-LayerNorm
transformer.  Two things differ and are carried here and in
``distill-import-hf``: BERT's LayerNorm epsilon (1e-12, against fairseq's
fixed 1e-5: about 1e-3 of difference in the outputs) is a model flag saved
with the checkpoint, and BERT's token-type embedding is folded into the
position embeddings by the importer.
"""

import torch.nn as nn
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import RobertaModel
from fairseq.models.roberta.model import base_architecture as roberta_base_architecture


def set_layer_norm_eps(module: nn.Module, eps: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = eps


@register_model("hf_bert")
class HFBertModel(RobertaModel):
    @staticmethod
    def add_args(parser):
        RobertaModel.add_args(parser)
        parser.add_argument("--layer-norm-eps", type=float, metavar="EPS",
                            help="epsilon of every LayerNorm, carried from the Hugging Face config "
                                 "(BERT: 1e-12)")

    @classmethod
    def build_model(cls, args, task):
        hf_bert_base(args)
        model = super().build_model(args, task)
        set_layer_norm_eps(model, args.layer_norm_eps)
        return model


@register_model_architecture("hf_bert", "hf_bert")
def hf_bert_base(args):
    """BERT-base sizes; distill-import-hf writes the flags of the imported model."""
    args.layer_norm_eps = getattr(args, "layer_norm_eps", 1e-12)
    roberta_base_architecture(args)
