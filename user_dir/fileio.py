"""How every tool of the plugin writes files: atomically, resumably, one run at a time.

The rules (README, "Outputs and reruns"):

* an output appears by rename from a temporary sibling whose name is unique
  to the writing process, so a crash leaves the earlier file or nothing, and
  two runs never write the same temporary file;
* outputs get the permissions of any file the user creates (the umask),
  not the 0600 of a temporary file;
* where several files make up one result, the one a rerun trusts as proof
  of completion (the marker) is written last;
* a work directory (the parts of a resumable job, or a demo's) is held by
  one process at a time: a second run is refused, naming the holder.
"""

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from typing import List, Optional, Sequence

logger = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_path(path: str) -> str:
    """A temporary sibling of ``path``, unique to this process and call, with the same suffix
    (``np.save`` appends ``.npy`` to names without it)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    ext = os.path.splitext(base)[1]
    return os.path.join(directory, f".{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{ext}")


def publish(tmp: str, path: str) -> None:
    """Move a finished temporary file into place with the user's default permissions."""
    os.chmod(tmp, _FILE_MODE)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: str, mode: str = "w", **open_kwargs):
    """Write ``path`` through a temporary file renamed into place on success.

    A crash or an exception leaves any earlier ``path`` untouched and no
    partial file behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path: str):
    """A temporary name to write ``path`` under (for writers that take a name: ``torch.save``,
    ``np.save``); renamed into place when the block succeeds, removed when it fails."""
    tmp = atomic_path(path)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_output_path(path: str) -> None:
    """Refuse, before any work, an output that cannot be written in the end."""
    if os.path.isdir(path):
        raise ValueError(f"output {path} is a directory: name a file")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise ValueError(f"output {path}: {parent} is not a directory")


def check_input_file(path: str, what: str = "input file") -> None:
    """A readable file, or a message that says what is wrong with the path."""
    if os.path.isdir(path):
        raise ValueError(f"{what} {path} is a directory: name a file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")


class WorkDirLocked(ValueError):
    """Another live process holds the work directory."""


@contextlib.contextmanager
def locked(path: str, what: str = "work directory"):
    """Hold ``path`` (a directory, created if needed) for this process.

    The lock is an ``flock`` on ``path/.lock``: the kernel drops it when the
    holder dies, even by ``kill -9``, so a stale lock never blocks a rerun.
    """
    lock_path = os.path.join(path, ".lock")
    while True:
        os.makedirs(path, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise WorkDirLocked(f"{what} {path} is in use by process {holder or '?'}: wait for it to "
                                f"finish or stop it, then rerun") from None
        # the holder may have finished and removed the directory meanwhile: lock the new file
        try:
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


# the temporary names made here: .NAME.PID.RANDOM.tmp, maybe followed by NAME's suffix
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.\w+\.tmp(?:\.\w*)?")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    except (OverflowError, ValueError):  # not a pid: not our file to judge
        return True
    try:  # a zombie (an orphan not yet reaped) has exited
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def remove_stale_temps(directory: str, names: Optional[Sequence[str]] = None) -> List[str]:
    """Delete the temporary files that dead processes left in ``directory``: those of
    ``names`` (output file names), or all.  A live writer's files are kept."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for entry in os.listdir(directory):
        m = _TEMP_NAME.fullmatch(entry)
        if m and (names is None or m["name"] in names) and not _alive(int(m["pid"])):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, entry))
                removed.append(os.path.join(directory, entry))
    if removed:
        logger.info("removed %d temporary file(s) of killed runs in %s", len(removed), directory)
    return removed


def prepare_work_dir(parts_dir: str, manifest: dict) -> None:
    """Reuse ``parts_dir`` of an interrupted run of the same job, else start it afresh.

    ``manifest`` identifies the job (inputs, their sizes and times, settings);
    finished parts found under a matching manifest are kept, so a rerun
    resumes where a killed run stopped.  The caller holds ``locked(parts_dir)``.
    """
    path = os.path.join(parts_dir, "manifest.json")
    if os.path.exists(path):
        with open(path) as f:
            try:
                same = json.load(f) == json.loads(json.dumps(manifest))
            except json.JSONDecodeError:
                same = False
        if same:
            return
        logger.info("%s belongs to other inputs; starting over", parts_dir)
        for name in os.listdir(parts_dir):
            if name != ".lock":
                p = os.path.join(parts_dir, name)
                shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    os.makedirs(parts_dir, exist_ok=True)
    with atomic_output(path, "w") as f:
        json.dump(manifest, f)


def remove_work_dir(parts_dir: str) -> None:
    """Delete a finished job's work directory."""
    shutil.rmtree(parts_dir, ignore_errors=True)
