from . import distillation, layerwise_distillation  # noqa: F401
