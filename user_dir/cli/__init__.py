"""Console tools: argument parsing over the library functions in ``user_dir``."""

import logging
import os
import sys


def setup_logging() -> None:
    """fairseq's log format on stderr at $LOGLEVEL (default INFO); with $DISTILL_LOG_FILE, every
    INFO line goes to that file as well (the demos keep the terminal quiet and the log whole)."""
    fmt = logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(os.environ.get("LOGLEVEL", "INFO").upper())
    handlers = [console]
    if os.environ.get("DISTILL_LOG_FILE"):
        handlers.append(logging.FileHandler(os.environ["DISTILL_LOG_FILE"], encoding="utf-8"))
        handlers[-1].setLevel(logging.INFO)
    for h in handlers:
        h.setFormatter(fmt)
    level = min(h.level for h in handlers)
    logging.basicConfig(level=level, handlers=handlers, force=True)


def run_main(main, argv=None) -> None:
    """Run a tool's ``main``; bad input ends with its message and exit code 2."""
    setup_logging()
    try:
        main(argv)
    except (ValueError, FileNotFoundError) as e:
        logging.getLogger("user_dir.cli").error("%s", e)
        sys.exit(2)
