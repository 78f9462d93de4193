"""distill-flags: the command-line flags of this plugin's fairseq components.

fairseq 0.12's ``fairseq-train --help`` exits during its first parsing pass,
before task, model, criterion and optimizer flags are added; this prints them,
generated from the same dataclasses fairseq uses.
"""

import argparse

from . import setup_logging


def components():
    """(kind, registered names, dataclass) of the plugin's components."""
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
    from fairseq.models import MODEL_DATACLASS_REGISTRY
    from fairseq.optim import OPTIMIZER_DATACLASS_REGISTRY
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    import user_dir  # noqa: F401  (registration)

    names = {
        "task": (TASK_DATACLASS_REGISTRY, ["feature_based_sentence_prediction",
                                            "feature_based_sentence_pair_prediction", "glue_distillation"]),
        "model": (MODEL_DATACLASS_REGISTRY, ["feature_based_linear_model",
                                              "feature_based_linear_biencoder_model",
                                              "bilstm_classifier", "bilstm_siamese_classifier"]),
        "criterion": (CRITERION_DATACLASS_REGISTRY, ["distillation"]),
        "optimizer": (OPTIMIZER_DATACLASS_REGISTRY, ["mixed_adam"]),
    }
    found = []
    for kind, (registry, ns) in names.items():
        for dc in dict.fromkeys(registry[n] for n in ns):  # components sharing a config: one entry
            found.append((kind, [n for n in ns if registry[n] is dc], dc))
    return found


def get_parsers():
    """One parser per component: components may share flag names (--max-positions)."""
    from fairseq.dataclass.utils import gen_parser_from_dataclass

    parsers = []
    for kind, names, dc in components():
        parser = argparse.ArgumentParser(prog=" / ".join(f"--{kind} {n}" for n in names), add_help=False,
                                         usage=argparse.SUPPRESS)
        gen_parser_from_dataclass(parser, dc())
        parsers.append(parser)
    return parsers


def help_text() -> str:
    return __doc__ + "\n".join(p.prog + "\n" + p.format_help() for p in get_parsers())


def cli_main() -> None:
    setup_logging()
    argparse.ArgumentParser(prog="distill-flags", description=__doc__).parse_args()
    print(help_text())


if __name__ == "__main__":
    cli_main()
