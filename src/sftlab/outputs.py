"""The output directory: refuse to clobber a finished run, and never leave a half-written one.

A run writes into a hidden staging folder beside `output_dir` and renames it into place only when
everything is written, so a crash or a bad input leaves either the old run or nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from sftlab.errors import SftlabError


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Fail early, before any training, when the output cannot or should not be written."""
    if output_dir.exists() and not output_dir.is_dir():
        raise SftlabError(f"output_dir {output_dir}: exists and is not a directory")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise SftlabError(
            f"output_dir {output_dir}: already holds files; pass --overwrite or choose another output_dir"
        )
    parent = output_dir.resolve().parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise SftlabError(f"output_dir {output_dir}: {existing} is not writable")


@contextlib.contextmanager
def staged_output(output_dir: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces `output_dir`, on any error it is removed."""
    check_output_dir(output_dir, overwrite)
    output_dir = output_dir.resolve()
    try:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = output_dir.parent / f".{output_dir.name}.partial-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    except OSError as error:
        raise SftlabError(f"output_dir {output_dir}: cannot create: {error.strerror}") from None
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = output_dir.parent / f".{output_dir.name}.previous-{os.getpid()}"
    if output_dir.exists():
        os.replace(output_dir, previous)
    os.replace(staging, output_dir)
    shutil.rmtree(previous, ignore_errors=True)
