"""Making a folder output appear in one step.

A folder is written complete into a hidden staging folder beside it (`.NAME.wsel-partial`), then:
- a new output: the staging folder is renamed to the final name;
- an existing folder (replaced with --force, or holding other files of the user): the user's other
  files are hard-linked into the staging folder, and the two folders are swapped atomically with
  renameat2(RENAME_EXCHANGE); the old folder (now under the staging name) is then removed.
Where the kernel or file system cannot exchange, the old folder is renamed aside
(`.NAME.wsel-previous`) just before the new one takes its name; a run killed between those two
renames is undone by the next run (`recover`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from pathlib import Path

from wsel.checkpoint.writer import PARTIAL_SUFFIX

PREVIOUS_SUFFIX = ".wsel-previous"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def staging_folder(target: Path) -> Path:
    return target.parent / f".{target.name}{PARTIAL_SUFFIX}"


def previous_folder(target: Path) -> Path:
    return target.parent / f".{target.name}{PREVIOUS_SUFFIX}"


def recover(target: Path) -> None:
    """Undo what a killed run left: restore a folder renamed aside, drop a stale staging folder."""
    previous = previous_folder(target)
    if previous.is_dir():
        if target.exists():
            shutil.rmtree(previous)  # killed after the new folder took its name: the old one is garbage
        else:
            os.rename(previous, target)  # killed between the two renames: put the old output back
    staging = staging_folder(target)
    if staging.is_dir() and not staging.is_symlink():
        shutil.rmtree(staging)


def publish(staging: Path, target: Path, replaced: set[str]) -> None:
    """Make `staging` the folder `target`. Entries of an existing `target` named in `replaced` (the old
    checkpoint's files) are dropped; every other entry is kept (hard-linked into the new folder)."""
    if not target.exists():
        os.rename(staging, target)
        return
    for entry in target.iterdir():
        if entry.name not in replaced and not (staging / entry.name).exists():
            _link(entry, staging / entry.name)
    try:
        _exchange(staging, target)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise
        previous = previous_folder(target)
        os.rename(target, previous)
        os.rename(staging, target)
        shutil.rmtree(previous)
        return
    shutil.rmtree(staging)  # now the old folder


def _link(source: Path, destination: Path) -> None:
    """A copy of `source` that shares its data: hard links for files, recursively for folders."""
    if source.is_symlink():
        os.symlink(os.readlink(source), destination)
    elif source.is_dir():
        destination.mkdir()
        for entry in source.iterdir():
            _link(entry, destination / entry.name)
    else:
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)  # a file system without hard links


def _exchange(a: Path, b: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(b))
