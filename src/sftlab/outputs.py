"""The output directory: refuse to clobber a run, one writer at a time, and never a half-written result.

During a run `output_dir` holds `checkpoints/` and a lock file (`.sftlab.lock`, with the writer's pid);
the final `model/`, `config.yaml` and `metrics.json` are written into a hidden staging folder inside it
and moved into place at the end, `metrics.json` last: a folder with `metrics.json` is a finished run.
Nothing is created before every input has been checked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from sftlab.errors import SftlabError

LOCK = ".sftlab.lock"
FINISHED_MARKER = "metrics.json"
FINAL_ENTRIES = ("model", "config.yaml", FINISHED_MARKER)


def write_errors() -> tuple[type[BaseException], ...]:
    """What a failed write (a full disk, an I/O error) raises: OSError, or the writers' own wrappers of it
    (torch.save raises RuntimeError, safetensors its SafetensorError)."""
    from safetensors import SafetensorError

    return (OSError, RuntimeError, SafetensorError)


def describe_write_error(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    # safetensors wraps the OS error: "Error while serializing: I/O error: ... (os error 28)"
    code = re.search(r"\(os error (\d+)\)", text)
    if code:
        return os.strerror(int(code.group(1)))
    # torch.save's zip writer reports a short write (a full disk) only as "unexpected pos N vs M".
    if "unexpected pos" in text:
        return f"{os.strerror(errno.ENOSPC)} (torch.save's writer stopped short)"
    return text[:200]


def is_finished(output_dir: Path) -> bool:
    return (output_dir / FINISHED_MARKER).is_file()


def check_output_dir(output_dir: Path, overwrite: bool, resume: bool = False) -> None:
    """Fail early, before any training, when the output cannot or should not be written."""
    if output_dir.exists() and not output_dir.is_dir():
        raise SftlabError(f"output_dir {output_dir}: exists and is not a directory")
    if output_dir.is_dir():
        holder = lock_holder(output_dir)
        if holder is not None:
            raise SftlabError(
                f"output_dir {output_dir}: another sftlab run (pid {holder}) is writing into it"
            )
        entries = [path for path in output_dir.iterdir() if path.name != LOCK]
        if entries and not overwrite and not resume:
            if (output_dir / "checkpoints").is_dir() and not is_finished(output_dir):
                raise SftlabError(
                    f"output_dir {output_dir}: holds an unfinished run; pass --resume to continue it "
                    "or --overwrite to start over"
                )
            raise SftlabError(
                f"output_dir {output_dir}: already holds files; pass --overwrite or choose another output_dir"
            )
        if resume and not overwrite and is_finished(output_dir):
            raise SftlabError(f"output_dir {output_dir}: the run there has finished; nothing to resume")
    existing = output_dir.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise SftlabError(f"output_dir {output_dir}: {existing} is not writable")


# --- the lock: one writer per output directory


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), so a pid reused by another process is not a holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_holder(output_dir: Path) -> int | None:
    """The pid of a live run holding the lock, or None (no lock, or a stale one left by a dead process)."""
    try:
        fields = (output_dir / LOCK).read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        pid, host, started = int(fields[0]), fields[1], fields[2]
    except (IndexError, ValueError):
        return None
    if host != socket.gethostname():
        return pid  # another machine's process: we cannot tell, so assume it is alive
    # This very process: an earlier run in it (the Python API) ended with an error and left its lock.
    if pid == os.getpid() or not _alive(pid):
        return None
    current = _start_time(pid)
    return pid if current is None or started in ("-", current) else None


def take_lock(output_dir: Path, overwrite: bool) -> None:
    """Create `output_dir` (after moving a run it replaces out of the way) and take its lock. A killed
    process leaves a stale lock, which the next run recognises by its dead pid and takes over."""
    output_dir = output_dir.resolve()
    lock = output_dir / LOCK
    try:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        if overwrite and output_dir.exists():
            holder = lock_holder(output_dir)
            if holder is not None:
                raise SftlabError(
                    f"output_dir {output_dir}: another sftlab run (pid {holder}) is writing into it"
                )
            trash = output_dir.parent / f".{output_dir.name}.previous-{os.getpid()}"
            os.replace(output_dir, trash)
            shutil.rmtree(trash, ignore_errors=True)
        output_dir.mkdir(exist_ok=True)
        pid = os.getpid()
        record = f"{pid} {socket.gethostname()} {_start_time(pid) or '-'}\n"
        for _ in range(2):
            try:
                descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                holder = lock_holder(output_dir)
                if holder is not None:
                    raise SftlabError(
                        f"output_dir {output_dir}: another sftlab run (pid {holder}) is writing into it"
                    ) from None
                lock.unlink(missing_ok=True)  # stale: its process is gone
        else:
            raise SftlabError(f"output_dir {output_dir}: cannot take the lock {lock}")
        with os.fdopen(descriptor, "w") as handle:
            handle.write(record)
    except OSError as error:
        raise SftlabError(f"output_dir {output_dir}: cannot create: {error.strerror or error}") from None


def release_lock(output_dir: Path) -> None:
    lock = output_dir / LOCK
    with contextlib.suppress(OSError, ValueError, IndexError):
        if int(lock.read_text(encoding="utf-8").split()[0]) == os.getpid():
            lock.unlink()


@contextlib.contextmanager
def staged_output(output_dir: Path, extra_entries: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a staging folder inside `output_dir`; on success its entries replace the final outputs (plus
    `extra_entries`, e.g. a multi-task run's task folders), with `metrics.json` (the finished-run marker)
    moved last. On any error the staging folder is removed."""
    staging = output_dir / f".final.partial-{os.getpid()}"
    try:
        for leftover in output_dir.glob(".final.partial-*"):  # from a run killed while saving
            shutil.rmtree(leftover)
        staging.mkdir()
    except OSError as error:
        raise SftlabError(f"output_dir {output_dir}: cannot write: {error.strerror or error}") from None
    try:
        yield staging
        for name in (*extra_entries, *FINAL_ENTRIES):
            source, target = staging / name, output_dir / name
            if not source.exists():
                continue
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(source, target)
    except write_errors() as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise SftlabError(
            f"output_dir {output_dir}: cannot write the final model: {describe_write_error(error)}"
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """A new folder written as a whole (e.g. `sftlab export`): files go into a hidden sibling that is renamed
    to `path` at the end, so an error leaves nothing behind. An existing non-empty `path` is refused."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise SftlabError(f"{path}: already exists and is not an empty folder; choose a new one")
    parent = path.resolve().parent
    staging = parent / f".{path.name}.partial-{os.getpid()}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    except OSError as error:
        raise SftlabError(f"{path}: cannot write: {error.strerror or error}") from None
    try:
        yield staging
        if path.exists():
            path.rmdir()
        os.replace(staging, path)
    except write_errors() as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise SftlabError(f"{path}: cannot write: {describe_write_error(error)}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
