from . import composite_distillation, distillation, layerwise_distillation  # noqa: F401
