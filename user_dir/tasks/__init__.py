from . import feature_based_sentence_prediction, glue_distillation  # noqa: F401
