"""distill-flags: the command-line flags of this plugin's fairseq components.

fairseq 0.12's ``fairseq-train --help`` exits during its first parsing pass,
before task, model, criterion and optimizer flags are added; this prints them,
generated from the same dataclasses fairseq uses.
"""

import argparse

from . import setup_logging


def components():
    """(kind, registered names, dataclass) of every component this plugin registers.

    Read from fairseq's registries: whatever a module of ``user_dir`` registers
    with a dataclass is listed, nothing is named here.
    """
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY, CRITERION_REGISTRY
    from fairseq.models import MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY
    from fairseq.optim import OPTIMIZER_DATACLASS_REGISTRY, OPTIMIZER_REGISTRY
    from fairseq.tasks import TASK_DATACLASS_REGISTRY, TASK_REGISTRY

    import user_dir  # noqa: F401  (registration)

    registries = {
        "task": (TASK_REGISTRY, TASK_DATACLASS_REGISTRY),
        "model": (MODEL_REGISTRY, MODEL_DATACLASS_REGISTRY),
        "criterion": (CRITERION_REGISTRY, CRITERION_DATACLASS_REGISTRY),
        "optimizer": (OPTIMIZER_REGISTRY, OPTIMIZER_DATACLASS_REGISTRY),
    }
    found = []
    for kind, (classes, dataclasses) in registries.items():
        ours = [n for n, c in classes.items()
                if c.__module__.split(".")[0] == user_dir.__name__ and n in dataclasses]
        for dc in dict.fromkeys(dataclasses[n] for n in ours):  # components sharing a config: one entry
            found.append((kind, [n for n in ours if dataclasses[n] is dc], dc))
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
