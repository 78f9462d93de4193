from . import mixed_adam  # noqa: F401
