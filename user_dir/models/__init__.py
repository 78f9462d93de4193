from . import dan  # noqa: F401
