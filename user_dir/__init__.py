"""fairseq plugin for knowledge distillation of text classifiers.

``fairseq-train --user-dir user_dir`` imports this package, which registers
the tasks, models, criterions, optimizers and encoders below.
"""

import argparse
import logging

import torch

# fairseq saves the config of argparse-style models (RoBERTa, hf_bert) as an
# argparse.Namespace; torch >= 2.6 loads checkpoints with weights_only=True and
# refuses it. A Namespace is a plain attribute container: safe to allow.
torch.serialization.add_safe_globals([argparse.Namespace])

# fairseq's speech task logs a tensorboardX notice at import: noise in every tool's output
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)

from . import criterions, encoders, models, optim, tasks  # noqa: E402,F401  (registration)
