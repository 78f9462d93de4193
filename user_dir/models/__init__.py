from . import bilstm, dan, hf_bert  # noqa: F401  (registration)
