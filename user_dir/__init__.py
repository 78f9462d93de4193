"""fairseq plugin for knowledge distillation of text classifiers.

``fairseq-train --user-dir user_dir`` imports this package, which registers
the tasks, models, criterions and optimizers below.
"""

from . import criterions, models, optim, tasks  # noqa: F401  (registration)
