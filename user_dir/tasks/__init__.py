from . import feature_based_sentence_prediction, glue_distillation, masked_lm_distillation, sandwich_distillation  # noqa: F401
