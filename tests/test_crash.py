"""Crash safety and determinism of `wsel init`.

- A run killed with SIGKILL at any point of a write (before, inside and after tensors, between the renames
  of a sharded output, before the index) leaves the destination as it was or, once past the commit point,
  as the complete new output: never a mix, never a partial file under a final name. Its temporary files
  are clearly named, and the next normal run succeeds and leaves none behind.
- Ctrl-C (SIGINT) exits 130 and removes the temporary files itself.
- A full disk (ENOSPC) and an unwritable destination give one clean line, exit 1, and leave nothing.
- Two runs with the same inputs give byte-identical files and the same --json report apart from timing;
  the order of tensors in the output is the teacher's storage order, whatever order the student lists them in.

Kill points are reached with a driver (`python -c DRIVER`) that patches wsel in its own process to signal
readiness through a file and wait at the N-th event; the test then kills it.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FullDisk, random_state, run_cli, save, write_manifest

import wsel.checkpoint.output as output_module

PARTIAL = ".wsel-partial"
INDEX = "model.safetensors.index.json"
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
EACCES_TEXT = os.strerror(errno.EACCES)  # "Permission denied"

# Every selection is a stride (all teacher dims are multiples of the student's): the driver never imports torch.
TEACHER_SHAPES: dict[str, tuple[int, ...]] = {"embed.weight": (64, 32), "norm.weight": (32,)}
STUDENT_SHAPES: dict[str, tuple[int, ...]] = {"embed.weight": (64, 16), "norm.weight": (16,)}
for _i in range(4):
    TEACHER_SHAPES |= {f"layers.{_i}.attn.weight": (96, 32), f"layers.{_i}.mlp.weight": (128, 32)}
    TEACHER_SHAPES[f"layers.{_i}.mlp.bias"] = (128,)
for _i in range(2):
    STUDENT_SHAPES |= {f"layers.{_i}.attn.weight": (48, 16), f"layers.{_i}.mlp.weight": (64, 16)}
    STUDENT_SHAPES[f"layers.{_i}.mlp.bias"] = (64,)
N_TENSORS = len(STUDENT_SHAPES)  # 8
SHARD_SIZE = "8kB"  # the student's ~24 kB of tensors in 3 shards of 3, 3 and 2 tensors
N_SHARDS = 3


# ------------------------------------------------------------------------------------------ helpers

DRIVER = r"""
import os, sys, time

ready, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.argv = ["wsel", *sys.argv[4:]]
count = [0]


def reached():
    hit = count[0] == n
    count[0] += 1
    return hit


def wait_here():
    with open(ready, "w") as f:
        f.write(mode)
    while True:  # until the test kills or interrupts us
        time.sleep(0.02)


import wsel.checkpoint.writer as writer_module
from wsel.checkpoint.reader import TensorReader

Writer = writer_module.SafetensorsWriter
if mode == "before-tensor":  # before the n-th tensor (counted over all shards) is written
    real_write = Writer.write

    def write(self, name, chunks):
        if reached():
            wait_here()
        return real_write(self, name, chunks)

    Writer.write = write
elif mode == "mid-tensor":  # half of the n-th tensor's bytes written
    real_write = Writer.write

    def write(self, name, chunks):
        if not reached():
            return real_write(self, name, chunks)

        def halves():
            data = b"".join(chunks)
            yield data[: len(data) // 2]
            file = getattr(self, "_file", None)
            if file is not None:
                file.flush()
            wait_here()

        return real_write(self, name, halves())

    Writer.write = write
elif mode == "after-finish":  # the n-th file is complete and fsynced, not yet renamed
    real_finish = Writer.finish

    def finish(self):
        real_finish(self)
        if reached():
            wait_here()

    Writer.finish = finish
elif mode in ("before-rename", "after-rename"):  # around the n-th rename of any file (shards, index, ...)
    for fname in ("replace", "rename"):
        real = getattr(os, fname)

        def renamed(src, dst, *a, _real=real, **k):
            hit = reached()
            if hit and mode == "before-rename":
                wait_here()
            result = _real(src, dst, *a, **k)
            if hit:
                wait_here()
            return result

        setattr(os, fname, renamed)
elif mode == "read":  # inside the n-th read of teacher bytes (whole tensors or selected row blocks)
    for method in ("read", "_read_into"):
        real_read = getattr(TensorReader, method)

        def read(self, *a, _real=real_read, **k):
            if reached():
                wait_here()
            return _real(self, *a, **k)

        setattr(TensorReader, method, read)
else:
    raise SystemExit(f"unknown mode {mode}")

from wsel.cli import main

main()
"""


def staging_of(folder: Path) -> Path:
    """Where wsel stages a folder output before publishing it in one step."""
    return folder.parent / f".{folder.name}{PARTIAL}"


def visible(folder: Path) -> dict[str, bytes]:
    """The files a user or a loader sees: regular files whose path has no hidden component."""
    if not folder.exists():
        return {}
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[str(rel)] = p.read_bytes()
    return out


def hidden(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def assert_clearly_named(folder: Path) -> None:
    """Anything wsel leaves behind after a kill is a hidden file that says it is wsel's temporary file."""
    for name in hidden(folder):
        assert "wsel" in name, name


@dataclass
class Setup:
    root: Path
    teacher: Path  # the teacher of the runs under test
    old_teacher: Path  # same names and shapes, other values: makes a previous output with other bytes
    manifest: Path
    control: Path  # ready files of the driver


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    control = tmp_path / "control"
    control.mkdir()
    return Setup(
        root=tmp_path,
        teacher=save(tmp_path / "teacher" / "model.safetensors", random_state(TEACHER_SHAPES, seed=1)),
        old_teacher=save(tmp_path / "old_teacher" / "model.safetensors", random_state(TEACHER_SHAPES, seed=2)),
        manifest=write_manifest(tmp_path / "student.json", STUDENT_SHAPES),
        control=control,
    )


def init_args(s: Setup, out: Path | str, *extra: str, teacher: Path | None = None) -> list[str]:
    return ["init", "-t", str(teacher or s.teacher), "-s", str(s.manifest), "-o", str(out), "-q", *extra]


def wsel_ok(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr


def run_to_kill_point(s: Setup, args: list[str], mode: str, n: int, sig: int = signal.SIGKILL) -> tuple[int, str]:
    """Run `wsel` under the driver until it waits at the kill point, then send `sig`; (exit status, stderr)."""
    ready = s.control / f"ready-{mode}-{n}-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(ready), mode, str(n), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    try:
        while not ready.exists():
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"wsel exited ({proc.returncode}) before kill point {mode} {n}: {err[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"kill point {mode} {n} not reached in 60 s")
            time.sleep(0.005)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def expected_output(s: Setup, name: str, *extra: str) -> dict[str, bytes]:
    """What a complete run writes, made by a normal run into a scratch folder."""
    scratch = s.root / f"expected-{time.monotonic_ns()}"
    scratch.mkdir()
    wsel_ok(init_args(s, scratch / name, *extra))
    return visible(scratch)


# ---------------------------------------------------------------------------- SIGKILL: single file

SINGLE_KILL_POINTS = [
    ("before-tensor", 0),  # header written, no tensor yet
    ("mid-tensor", 3),  # half a tensor
    ("before-tensor", N_TENSORS - 1),  # all but the last tensor
    ("read", 2),  # while reading the teacher
    ("after-finish", 0),  # complete and fsynced as a temporary file
    ("before-rename", 0),  # about to be renamed into place
    ("after-rename", 0),  # renamed: the run is complete (the new output is what is visible)
]


@pytest.mark.parametrize("previous", [False, True], ids=["new", "replace"])
@pytest.mark.parametrize(("mode", "n"), SINGLE_KILL_POINTS, ids=[f"{m}-{n}" for m, n in SINGLE_KILL_POINTS])
def test_sigkill_single_file(setup: Setup, mode: str, n: int, previous: bool) -> None:
    dest = setup.root / "dest"
    dest.mkdir()
    (dest / "notes.txt").write_text("the user's own file")
    out = dest / "student.safetensors"
    force = ("--force",) if previous else ()
    if previous:
        wsel_ok(init_args(setup, out, teacher=setup.old_teacher))
    before = visible(dest)
    new = expected_output(setup, "student.safetensors") | {"notes.txt": b"the user's own file"}
    assert new != before

    status, _ = run_to_kill_point(setup, init_args(setup, out, *force), mode, n)
    assert status == -signal.SIGKILL

    after = visible(dest)
    if mode == "after-rename":
        assert after == new
    else:
        assert after == before, "a killed run changed the visible output"
    assert_clearly_named(dest)

    # The next normal run succeeds and cleans up.
    again = ("--force",) if (dest / "student.safetensors").exists() else ()
    wsel_ok(init_args(setup, out, *again))
    assert visible(dest) == new
    assert hidden(dest) == []


# ------------------------------------------------------------------------ SIGKILL: sharded folder

SHARDED_KILL_POINTS = [
    ("before-tensor", 0),  # first shard's header written
    ("mid-tensor", 4),  # inside a tensor of the second shard
    ("read", 6),  # reading for the third shard
    ("after-finish", 0),  # shard 1 complete as a temporary file
    ("after-finish", 2),  # every shard complete, none renamed
    ("before-rename", 1),  # shard 1 renamed into place (today), shards 2-3 not
    ("before-rename", 2),  # shards 1-2 renamed, not shard 3
    ("before-rename", 3),  # every shard renamed, not the index
]


def sharded_folder(setup: Setup, previous: str) -> tuple[Path, dict[str, bytes], dict[str, bytes]]:
    """The destination folder in the state `previous` names; (folder, before, complete new output)."""
    dest = setup.root / "dest"
    if previous == "sharded":  # an older student with the same layout and other bytes
        wsel_ok(init_args(setup, dest, "--max-shard-size", SHARD_SIZE, teacher=setup.old_teacher))
    elif previous == "single":  # an older student as one model.safetensors
        wsel_ok(init_args(setup, dest, teacher=setup.old_teacher))
    if previous != "none":
        (dest / "README.md").write_text("the user's model card")
    before = visible(dest)
    new = expected_output(setup, "dest", "--max-shard-size", SHARD_SIZE)
    new = {k.removeprefix("dest/"): v for k, v in new.items()}
    if previous != "none":
        new["README.md"] = b"the user's model card"
    assert len([n for n in new if n.startswith("model-")]) == N_SHARDS
    assert new != before
    return dest, before, new


@pytest.mark.parametrize("previous", ["none", "sharded", "single"])
@pytest.mark.parametrize(("mode", "n"), SHARDED_KILL_POINTS, ids=[f"{m}-{n}" for m, n in SHARDED_KILL_POINTS])
def test_sigkill_sharded_folder(setup: Setup, mode: str, n: int, previous: str) -> None:
    """A sharded output becomes visible only when complete: at every kill point the folder shows the
    previous output exactly, or the complete new one; never some new shards beside old ones."""
    dest, before, new = sharded_folder(setup, previous)
    force = ("--force",) if previous != "none" else ()
    args = init_args(setup, dest, "--max-shard-size", SHARD_SIZE, *force)

    status, _ = run_to_kill_point(setup, args, mode, n)
    assert status == -signal.SIGKILL

    after = visible(dest)
    assert after in (before, new), (
        f"killed at {mode} {n}: the folder holds a mix: {sorted(after)} "
        f"(previous: {sorted(before)}; new: {sorted(new)}; "
        f"new files changed: {sorted(k for k in after if after.get(k) != before.get(k))})"
    )
    assert_clearly_named(dest)

    again = ("--force",) if after else ()
    wsel_ok(init_args(setup, dest, "--max-shard-size", SHARD_SIZE, *again))
    assert visible(dest) == new
    assert hidden(dest) == []


def test_sigkill_after_the_last_rename_then_rerun(setup: Setup) -> None:
    """Killed once everything is in place (index included), before the previous checkpoint's extra files are
    removed: what is visible is still one checkpoint, and a rerun leaves exactly the new output."""
    dest, before, new = sharded_folder(setup, "single")
    args = init_args(setup, dest, "--max-shard-size", SHARD_SIZE, "--force")
    status, _ = run_to_kill_point(setup, args, "after-rename", N_SHARDS)  # the shards renamed, then the index
    assert status == -signal.SIGKILL
    after = visible(dest)
    assert after in (before, new), f"mix of two checkpoints: {sorted(after)}"
    wsel_ok(args)
    assert visible(dest) == new
    assert hidden(dest) == []


def test_stale_temporary_files_of_another_layout_are_removed(setup: Setup) -> None:
    """A sharded run killed with its shards complete leaves `.model-0000i-of-00003.safetensors.wsel-partial`;
    the next run writes one model.safetensors (another layout): it must still remove those leftovers."""
    dest = setup.root / "dest"
    status, _ = run_to_kill_point(
        setup, init_args(setup, dest, "--max-shard-size", SHARD_SIZE), "after-finish", N_SHARDS - 1
    )
    assert status == -signal.SIGKILL
    staging = staging_of(dest)  # the folder is staged beside its final name, hidden
    leftovers = sorted(p.name for p in staging.iterdir())
    assert leftovers and all(name.endswith(PARTIAL) for name in leftovers), leftovers
    assert not dest.exists()

    wsel_ok(init_args(setup, dest))
    assert sorted(visible(dest)) == ["model.safetensors"]
    assert hidden(dest) == [] and not staging.exists(), "stale temporary files of the killed run are left behind"


def test_a_killed_run_does_not_block_the_next_one(setup: Setup) -> None:
    """Nothing the killed run left makes the next run ask for --force (it wrote no checkpoint)."""
    dest = setup.root / "dest"
    status, _ = run_to_kill_point(setup, init_args(setup, dest, "--max-shard-size", SHARD_SIZE), "mid-tensor", 4)
    assert status == -signal.SIGKILL
    result = run_cli(*init_args(setup, dest, "--max-shard-size", SHARD_SIZE))
    assert result.exit_code == 0, result.stderr
    assert hidden(dest) == []


# ------------------------------------------------------------------------------------------- SIGINT

SIGINT_POINTS = [("before-tensor", 2), ("after-finish", 0), ("before-rename", 1)]


@pytest.mark.parametrize(("mode", "n"), SIGINT_POINTS, ids=[f"{m}-{n}" for m, n in SIGINT_POINTS])
@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_ctrl_c_exits_130_and_cleans_up(setup: Setup, mode: str, n: int, layout: str) -> None:
    if layout == "single":
        dest = setup.root / "dest"
        dest.mkdir()
        out: Path = dest / "student.safetensors"
        wsel_ok(init_args(setup, out, teacher=setup.old_teacher))
        extra: tuple[str, ...] = ("--force",)
        if mode == "before-rename" and n == 1:
            n = 0  # one file: its only rename
    else:
        dest, _, _ = sharded_folder(setup, "sharded")
        out = dest
        extra = ("--max-shard-size", SHARD_SIZE, "--force")
    before = visible(dest)

    status, err = run_to_kill_point(setup, init_args(setup, out, *extra), mode, n, sig=signal.SIGINT)
    assert status == 130, err[-2000:]
    assert err == "wsel: interrupted\n"
    assert visible(dest) == before
    assert hidden(dest) == []


# ------------------------------------------------------------------------------ full disk (ENOSPC)


def fill_disk(monkeypatch: pytest.MonkeyPatch, folder: Path, room: int, name_contains: str = "") -> None:
    """Files opened for writing under `folder` (whose name contains `name_contains`) accept `room` bytes."""
    real_open = builtins.open

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_open(file, mode, *args, **kwargs)
        path = Path(os.fsdecode(file)) if isinstance(file, (str, bytes, os.PathLike)) else None
        writing = any(c in mode for c in "wax+")
        if writing and path is not None and path.resolve().parent == folder.resolve() and name_contains in path.name:
            return FullDisk(f, room)
        return f

    monkeypatch.setattr(builtins, "open", fake_open)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("previous", [False, True], ids=["new", "replace"])
@pytest.mark.parametrize("room", [0, 3000], ids=["in-header", "in-data"])
def test_disk_full_single_file(setup: Setup, monkeypatch: pytest.MonkeyPatch, previous: bool, room: int) -> None:
    dest = setup.root / "dest"
    dest.mkdir()
    out = dest / "student.safetensors"
    if previous:
        wsel_ok(init_args(setup, out, teacher=setup.old_teacher))
    before = snapshot(setup.root)
    fill_disk(monkeypatch, dest, room)
    result = run_cli(*init_args(setup, out, "--force"))
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"wsel: error: {out}: cannot write: {os.strerror(errno.ENOSPC)}\n"
    assert snapshot(setup.root) == before


def test_disk_full_at_fsync(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = setup.root / "dest"
    dest.mkdir()
    out = dest / "student.safetensors"
    before = snapshot(setup.root)

    def full(fd: int) -> None:
        raise ENOSPC

    monkeypatch.setattr(os, "fsync", full)
    result = run_cli(*init_args(setup, out))
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"wsel: error: {out}: cannot write: {os.strerror(errno.ENOSPC)}\n"
    assert snapshot(setup.root) == before


@pytest.mark.parametrize("previous", ["none", "sharded"])
def test_disk_full_in_a_later_shard(setup: Setup, monkeypatch: pytest.MonkeyPatch, previous: str) -> None:
    """The third shard cannot be written: the first two (complete) are dropped too, a folder the run created
    is removed, and a previous checkpoint is untouched."""
    dest, _, _ = sharded_folder(setup, previous)
    before = snapshot(setup.root)
    fill_disk(monkeypatch, staging_of(dest), 100, name_contains="model-00003")
    result = run_cli(*init_args(setup, dest, "--max-shard-size", SHARD_SIZE, "--force"))
    assert (result.exit_code, result.stdout) == (1, "")
    shard = dest / "model-00003-of-00003.safetensors"
    assert result.stderr == f"wsel: error: {shard}: cannot write: {os.strerror(errno.ENOSPC)}\n"
    assert snapshot(setup.root) == before


@pytest.mark.parametrize("previous", ["none", "sharded", "single"])
def test_disk_full_writing_the_index(setup: Setup, monkeypatch: pytest.MonkeyPatch, previous: str) -> None:
    """Every shard is written but the index is not: the run failed, so no new shard may be left visible
    (a folder of shards without their index, or new shards beside an old index, loads wrongly or not at all)."""
    dest, _, _ = sharded_folder(setup, previous)
    before = snapshot(setup.root)
    fill_disk(monkeypatch, staging_of(dest), 0, name_contains="index")
    result = run_cli(*init_args(setup, dest, "--max-shard-size", SHARD_SIZE, "--force"))
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"wsel: error: {dest / INDEX}: cannot write: {os.strerror(errno.ENOSPC)}\n"
    assert snapshot(setup.root) == before, "a failed run left new shards visible"


# ------------------------------------------------------------------------------ unwritable destination


@dataclass
class DenyWrites:
    """The folder behaves as if read-only (chmod 0o555, needed because tests run as root, where chmod does not
    stop writes): creating, removing or renaming an entry in it fails with EACCES; a missing entry still
    gives ENOENT, and existing files can still be opened, as on Linux."""

    folder: Path

    def denied(self, path: Any) -> bool:
        try:
            p = Path(os.fsdecode(path))
        except TypeError:
            return False
        parent = (p if p.is_absolute() else Path.cwd() / p).parent.resolve()
        target = self.folder.resolve()
        return parent == target or target in parent.parents

    @staticmethod
    def error(code: int, path: Any) -> OSError:
        return OSError(code, os.strerror(code), os.fsdecode(path))

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_open, real_os_open = builtins.open, os.open
        real_mkdir, real_replace, real_rename, real_unlink = os.mkdir, os.replace, os.rename, os.unlink

        def fake_open(file: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
            path_like = isinstance(file, (str, bytes, os.PathLike))
            if path_like and any(c in mode for c in "wax+") and self.denied(file) and not os.path.lexists(file):
                raise self.error(errno.EACCES, file)
            return real_open(file, mode, *a, **k)

        def fake_os_open(path: Any, flags: int, *a: Any, **k: Any) -> int:
            if flags & os.O_CREAT and self.denied(path) and not os.path.lexists(path):
                raise self.error(errno.EACCES, path)
            return real_os_open(path, flags, *a, **k)

        def fake_mkdir(path: Any, *a: Any, **k: Any) -> None:
            if self.denied(path):
                raise self.error(errno.EEXIST if os.path.lexists(path) else errno.EACCES, path)
            real_mkdir(path, *a, **k)

        def fake_unlink(path: Any, *a: Any, **k: Any) -> None:
            if self.denied(path):
                raise self.error(errno.EACCES if os.path.lexists(path) else errno.ENOENT, path)
            real_unlink(path, *a, **k)

        def guard(real: Any) -> Any:
            def fake(src: Any, dst: Any, *a: Any, **k: Any) -> Any:
                if self.denied(src) or self.denied(dst):
                    raise self.error(errno.EACCES if os.path.lexists(src) else errno.ENOENT, src)
                return real(src, dst, *a, **k)

            return fake

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(os, "open", fake_os_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)
        monkeypatch.setattr(os, "unlink", fake_unlink)
        monkeypatch.setattr(os, "remove", fake_unlink)
        monkeypatch.setattr(os, "replace", guard(real_replace))
        monkeypatch.setattr(os, "rename", guard(real_rename))


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# Real chmod only where it denies writes (not as root, where CI runs); the simulation runs everywhere.
@pytest.fixture(params=["simulated"] if is_root() else ["simulated", "chmod"])
def read_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A function making a folder unwritable: chmod 0o555 when that works (not root), else simulated."""
    made: list[Path] = []

    def make(folder: Path) -> None:
        if request.param == "chmod":
            folder.chmod(0o555)
            made.append(folder)
        else:
            DenyWrites(folder).install(monkeypatch)

    yield make
    for folder in made:
        folder.chmod(0o755)


def test_unwritable_folder_single_file(setup: Setup, read_only: Any) -> None:
    dest = setup.root / "dest"
    dest.mkdir()
    out = dest / "student.safetensors"
    read_only(dest)
    before = snapshot(setup.root)
    result = run_cli(*init_args(setup, out))
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"wsel: error: {out}: cannot write: {EACCES_TEXT}\n"
    assert snapshot(setup.root) == before


def test_unwritable_existing_output_folder(setup: Setup, read_only: Any) -> None:
    dest, _, _ = sharded_folder(setup, "sharded")
    read_only(dest)
    before = snapshot(setup.root)
    result = run_cli(*init_args(setup, dest, "--max-shard-size", SHARD_SIZE, "--force"))
    assert (result.exit_code, result.stdout) == (1, "")
    first = dest / "model-00001-of-00003.safetensors"
    assert result.stderr == f"wsel: error: {first}: cannot write: {EACCES_TEXT}\n"
    assert snapshot(setup.root) == before


def test_output_folder_that_cannot_be_created(setup: Setup, read_only: Any) -> None:
    """`-o parent/new/` where parent is read-only: mkdir fails. One line naming the folder, not a traceback."""
    parent = setup.root / "parent"
    parent.mkdir()
    read_only(parent)
    dest = parent / "new"
    before = snapshot(setup.root)
    result = run_cli(*init_args(setup, f"{dest}/"))
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith(f"wsel: error: {dest}")
    assert result.stderr.count("\n") == 1
    assert EACCES_TEXT in result.stderr
    assert snapshot(setup.root) == before


# ------------------------------------------------------------------------------------------- determinism


def run_json(args: list[str], env: dict[str, str] | None = None) -> dict:
    """A run in its own process (its own hash seed); returns the --json report without timing fields."""
    proc = subprocess.run(
        [sys.executable, "-m", "wsel", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert isinstance(doc["run"]["seconds"], (int, float))
    del doc["run"]["seconds"]
    return doc


@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_two_runs_are_byte_identical_with_the_same_json_report(setup: Setup, layout: str) -> None:
    out = setup.root / ("student.safetensors" if layout == "single" else "student")
    extra = ["--max-shard-size", SHARD_SIZE] if layout == "sharded" else []
    first = run_json(init_args(setup, out, *extra), env={"PYTHONHASHSEED": "1"})
    files = visible(setup.root / "student") if layout == "sharded" else {"f": out.read_bytes()}
    second = run_json(init_args(setup, out, *extra, "--force"), env={"PYTHONHASHSEED": "4242"})
    again = visible(setup.root / "student") if layout == "sharded" else {"f": out.read_bytes()}
    assert first == second
    assert files == again
    if layout == "sharded":
        assert len(files) == N_SHARDS + 1  # shards + index


def test_output_order_is_the_teachers_storage_order(setup: Setup) -> None:
    """Documented (README, Output): tensors are written in the teacher's storage order, so the student's own
    order (manifest keys) changes nothing in the bytes."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "Tensors are written in the teacher's storage order" in readme

    a, b = setup.root / "a.safetensors", setup.root / "b.safetensors"
    wsel_ok(init_args(setup, a))
    reversed_manifest = setup.root / "reversed.json"
    reversed_manifest.write_text(json.dumps({k: list(v) for k, v in reversed(list(STUDENT_SHAPES.items()))}))
    wsel_ok(["init", "-t", str(setup.teacher), "-s", str(reversed_manifest), "-o", str(b), "-q"])
    assert a.read_bytes() == b.read_bytes()

    from wsel.checkpoint.header import read_header

    teacher_order = [t.name for t in read_header(setup.teacher).tensors if t.name in STUDENT_SHAPES]
    header_len = int.from_bytes(a.read_bytes()[:8], "little")
    header = json.loads(a.read_bytes()[8 : 8 + header_len])
    written_order = [k for k in header if k != "__metadata__"]  # the JSON key order as written
    assert written_order == teacher_order
    offsets = [header[k]["data_offsets"] for k in written_order]
    assert offsets == sorted(offsets)


def test_copying_the_teacher_elsewhere_changes_nothing(setup: Setup) -> None:
    """The output depends on the teacher's content and file names, not on where it lives."""
    a, b = setup.root / "a.safetensors", setup.root / "b.safetensors"
    wsel_ok(init_args(setup, a))
    moved = setup.root / "elsewhere" / "deeper"
    moved.mkdir(parents=True)
    shutil.copy(setup.teacher, moved / setup.teacher.name)
    wsel_ok(init_args(setup, b, teacher=moved / setup.teacher.name))
    assert a.read_bytes() == b.read_bytes()


def test_index_write_goes_through_a_temporary_file(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index too is written beside its final name and renamed: never a half-written index."""
    dest = setup.root / "dest"
    seen: list[str] = []
    real = output_module.write_atomically

    def spy(path: Path, data: bytes, shown_as: Path | None = None) -> None:
        seen.append(path.name)
        real(path, data, shown_as)

    monkeypatch.setattr(output_module, "write_atomically", spy)
    wsel_ok(init_args(setup, dest, "--max-shard-size", SHARD_SIZE))
    assert INDEX in seen
    assert hidden(dest) == []
