"""Console tools: argument parsing over the library functions in ``user_dir``."""

import logging
import os
import sys


def setup_logging() -> None:
    """fairseq's log format, level from $LOGLEVEL (default INFO)."""
    logging.basicConfig(
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        level=os.environ.get("LOGLEVEL", "INFO").upper(),
        stream=sys.stderr,
        force=True,
    )


def run_main(main, argv=None) -> None:
    """Run a tool's ``main``; bad input ends with its message and exit code 2."""
    setup_logging()
    try:
        main(argv)
    except (ValueError, FileNotFoundError) as e:
        logging.getLogger("user_dir.cli").error("%s", e)
        sys.exit(2)
