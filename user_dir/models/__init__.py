from . import dan, hf_bert  # noqa: F401  (registration)
