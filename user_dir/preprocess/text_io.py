"""Line-exact text reading, one-at-a-time jobs and chunked parallel processing.

Line semantics used by every tool of the plugin (documented in the README):

* a line ends at ``\\n`` only; a trailing ``\\r`` is removed, a lone ``\\r``
  inside a line is kept as text (it is whitespace to the tokenizers);
* a byte-order mark (U+FEFF) at the start of a line is removed;
* bytes that are not valid UTF-8 are decoded as U+FFFD, counted and
  reported with their line numbers; the line itself is kept, so outputs
  always have exactly one line per input line;
* a last line without a final newline is still a line; an empty file has
  no lines;
* HTML line-break tags (``<br>``, ``<br/>``, ``<br />``, any case: IMDB's
  paragraph marks) are read as one space each (:func:`clean_text`), so no
  tool sees them as words; the n-gram and WordPiece tokenizers apply the
  same rule to strings given directly in Python.
"""

import contextlib
import logging
import multiprocessing as mp
import os
import re
import signal
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm

from ..fileio import locked, remove_stale_temps

logger = logging.getLogger(__name__)

BOM = "\ufeff"
_PROGRESS_EVERY_BYTES = 1 << 20
_LINE_BREAK_TAG = re.compile(r"<br\s*/?\s*>", re.IGNORECASE)


def clean_text(text: str) -> str:
    """HTML line-break tags become spaces (one per tag; the tokenizers split on any run)."""
    return _LINE_BREAK_TAG.sub(" ", text) if "<" in text else text


@dataclass
class DecodeReport:
    """Line numbers (0-based, within a chunk) whose bytes were not valid UTF-8."""

    bad_lines: List[int] = field(default_factory=list)
    num_lines: int = 0


def decode_line(raw: bytes, lineno: int, report: Optional[DecodeReport]) -> str:
    """Decode one raw line (without its ``\\n``) following the rules above."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        if report is not None:
            report.bad_lines.append(lineno)
    if text.startswith(BOM):
        text = text[1:]
    return clean_text(text)


def iter_raw_lines(path: str, start: int = 0, end: Optional[int] = None,
                   progress: Optional[Callable[[int], None]] = None) -> Iterator[bytes]:
    """Yield the raw lines (no ``\\n``) of ``path`` between byte offsets."""
    with open(path, "rb") as f:
        f.seek(start)
        pos, pending = start, 0
        for raw in f:
            if end is not None and pos >= end:
                break
            pos += len(raw)
            pending += len(raw)
            if progress is not None and pending >= _PROGRESS_EVERY_BYTES:
                progress(pending)
                pending = 0
            yield raw[:-1] if raw.endswith(b"\n") else raw
        if progress is not None and pending:
            progress(pending)


def iter_lines(path: str, start: int = 0, end: Optional[int] = None,
               report: Optional[DecodeReport] = None,
               progress: Optional[Callable[[int], None]] = None) -> Iterator[str]:
    """Yield decoded lines of ``path`` (see module docstring for the rules)."""
    for i, raw in enumerate(iter_raw_lines(path, start, end, progress)):
        if report is not None:
            report.num_lines = i + 1
        yield decode_line(raw, i, report)


def iter_line_batches(path: str, start: int = 0, end: Optional[int] = None,
                      report: Optional[DecodeReport] = None,
                      progress: Optional[Callable[[int], None]] = None,
                      batch_bytes: int = 1 << 20) -> Iterator[List[str]]:
    """:func:`iter_lines`'s lines, a list of about ``batch_bytes`` at a time.

    A batch is read and decoded at once; per-line work happens only where a
    batch holds a ``\\r``, a BOM, a tag or invalid UTF-8 (then it is decoded
    line by line, as :func:`iter_lines` does)."""
    with open(path, "rb") as f:
        f.seek(start)
        pos, lineno = start, 0
        while end is None or pos < end:
            raws = f.readlines(batch_bytes)
            if not raws:
                break
            if end is not None and pos + sum(map(len, raws)) > end:  # stop at the range's end
                cut, total = 0, pos
                while total < end:
                    total += len(raws[cut])
                    cut += 1
                raws = raws[:cut]
            size = sum(map(len, raws))
            pos += size
            if progress is not None:
                progress(size)
            blob = b"".join(raws)
            try:
                text = blob.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is None or "\r" in text or BOM in text:
                lines = [decode_line(r[:-1] if r.endswith(b"\n") else r, lineno + i, report)
                         for i, r in enumerate(raws)]
            else:
                lines = text.split("\n")
                if text.endswith("\n"):
                    lines.pop()
                if "<" in text:
                    lines = list(map(clean_text, lines))
            lineno += len(lines)
            if report is not None:
                report.num_lines = lineno
            yield lines


def read_lines(path: str) -> List[str]:
    """All lines of a (small) file, decoded like :func:`iter_lines`.

    Invalid UTF-8 is refused here, naming the file and line, because small
    files (labels, dictionaries, prediction inputs) are meant to be exact.
    """
    report = DecodeReport()
    lines = list(iter_lines(path, report=report))
    if report.bad_lines:
        raise ValueError(
            f"{path}: line {report.bad_lines[0] + 1} is not valid UTF-8 "
            f"({len(report.bad_lines)} such lines)"
        )
    return lines


def count_lines(path: str) -> int:
    """Number of lines as :func:`iter_lines` sees them."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while True:
            buf = f.read(1 << 24)
            if not buf:
                break
            n += buf.count(b"\n")
            last = buf[-1:]
    return n + (0 if last == b"\n" else 1)


def lines_before(path: str, offset: int) -> int:
    """Number of lines that end before byte ``offset`` (to name lines of a shard)."""
    n, pos = 0, 0
    with open(path, "rb") as f:
        while pos < offset:
            buf = f.read(min(1 << 24, offset - pos))
            if not buf:
                break
            n += buf.count(b"\n")
            pos += len(buf)
    return n


def find_offsets(path: str, num_chunks: int) -> List[int]:
    """Byte offsets splitting ``path`` into at most ``num_chunks`` line-aligned chunks."""
    size = os.path.getsize(path)
    num_chunks = max(1, min(num_chunks, size or 1))
    offsets = [0]
    with open(path, "rb") as f:
        for i in range(1, num_chunks):
            f.seek(max(size * i // num_chunks, offsets[-1]))
            if f.tell() > 0:
                f.seek(f.tell() - 1)
                f.readline()  # move to the start of the next line
            pos = f.tell()
            if pos > offsets[-1] and pos < size:
                offsets.append(pos)
    offsets.append(size)
    return offsets


# ------------------------------------------------------------------------ jobs

@contextlib.contextmanager
def output_job(outputs: Sequence[str], parts_dir: str):
    """Run the job writing ``outputs`` alone: hold ``parts_dir`` for the whole run (a second
    run is refused, naming the holder), then clear what killed runs left beside the outputs
    and in ``parts_dir``."""
    with locked(parts_dir):
        by_dir = {}
        for path in outputs:
            by_dir.setdefault(os.path.dirname(os.path.abspath(path)), []).append(os.path.basename(path))
        for directory, names in by_dir.items():
            remove_stale_temps(directory, names)
        remove_stale_temps(parts_dir)
        yield


# ---------------------------------------------------------------- parallel map

_progress_value = None


def _die_with_parent(parent: int) -> None:
    """Linux: a worker of a killed run dies too.  Otherwise it finishes its chunk and
    holds the job's lock (inherited by fork), so an immediate rerun is refused."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def _init_worker(value, parent: Optional[int] = None):
    global _progress_value
    _progress_value = value
    if parent is not None:
        _die_with_parent(parent)


def _report_progress(nbytes: int) -> None:
    if _progress_value is not None:
        with _progress_value.get_lock():
            _progress_value.value += nbytes


def progress_callback() -> Callable[[int], None]:
    """The byte-progress reporter for code running inside :func:`map_chunks`."""
    return _report_progress


def usable_cpus() -> int:
    """The cores this process may run on (its affinity where the OS tells it, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def map_chunks(fn: Callable, tasks: Sequence[Tuple], workers: int, total_bytes: int,
               desc: str) -> list:
    """Run ``fn(*task)`` for every task in ``workers`` processes, in order.

    ``fn`` reports processed bytes through :func:`progress_callback`; a tqdm
    bar over ``total_bytes`` shows them.  With one worker everything runs in
    this process (no pickling, easy debugging).
    """
    global _progress_value
    value = mp.Value("q", 0)
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=desc,
               disable=None, mininterval=1.0)
    try:
        if workers <= 1 or len(tasks) <= 1:
            _init_worker(value)
            results = []
            for task in tasks:
                results.append(fn(*task))
                bar.update(value.value - bar.n)
            return results
        with mp.Pool(min(workers, len(tasks)), initializer=_init_worker,
                     initargs=(value, os.getpid())) as pool:
            pending = pool.starmap_async(fn, tasks, chunksize=1)
            while not pending.ready():
                pending.wait(0.5)
                bar.update(value.value - bar.n)
            results = pending.get()
        bar.update(value.value - bar.n)
        return results
    finally:
        _progress_value = None
        bar.close()


def format_line_list(lines: Sequence[int], limit: int = 5) -> str:
    """'3, 17, 20 and 4 more' for 1-based line numbers."""
    shown = ", ".join(str(n) for n in lines[:limit])
    more = len(lines) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def warn_bad_utf8(path: str, lines: Sequence[int]) -> None:
    """Log the (1-based) lines of ``path`` whose invalid bytes became U+FFFD."""
    if len(lines) == 1:
        logger.warning("%s: line %d is not valid UTF-8; its bad bytes were read as U+FFFD", path, lines[0])
    elif lines:
        logger.warning("%s: %d lines are not valid UTF-8 (lines %s); their bad bytes were read as U+FFFD",
                       path, len(lines), format_line_list(lines))
