from . import bilstm, dan, hf_bert, pruned_roberta  # noqa: F401  (registration)
