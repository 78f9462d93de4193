from . import feature_based_sentence_prediction  # noqa: F401
