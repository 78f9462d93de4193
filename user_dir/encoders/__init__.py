from . import wordpiece  # noqa: F401  (registration)
