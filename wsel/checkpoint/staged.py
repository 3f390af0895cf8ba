"""An output being written: files go where a failure cannot touch the target, then appear in one step.

A single `.safetensors` file is written as `.NAME.wsel-partial` beside it and renamed into place by its
writer's commit. A folder is written complete into a hidden staging folder beside it and published in one
step (`wsel.checkpoint.publish`). `commit()` makes the new output appear; leaving the context without it
(an error, Ctrl-C) rolls back: temporary files and the staging folder are removed, the target is untouched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from wsel.checkpoint.index import INDEX_FILE
from wsel.checkpoint.output import OutputLayout, Shard, existing_model_files, write_atomically, write_index
from wsel.checkpoint.publish import publish, recover, staging_folder
from wsel.checkpoint.writer import PARTIAL_SUFFIX, SafetensorsWriter
from wsel.errors import OutputError


class ExtraFiles(Protocol):
    """Small files written beside the weights of a folder output (config.json, tokenizer files)."""

    @property
    def names(self) -> tuple[str, ...]: ...

    def contents(self) -> Iterable[tuple[str, bytes]]:
        """(name, bytes) of each file, in `names` order."""
        ...


class StagedOutput:
    """`with StagedOutput(layout, extra) as staged:` open a writer per shard, then `commit()`."""

    def __init__(self, out: OutputLayout, extra: ExtraFiles | None = None) -> None:
        self.out = out
        self.extra = extra
        self.staging = staging_folder(out.target)
        self._writers: list[SafetensorsWriter] = []
        self._committed = False

    @property
    def folder(self) -> Path:
        """Where files are written until the commit."""
        return self.staging if self.out.is_folder else self.out.target.parent

    def __enter__(self) -> StagedOutput:
        target = self.out.target
        if self.out.is_folder:
            recover(target)  # undo what a killed run left
            self._make_staging()
        else:
            (target.parent / f".{target.name}{PARTIAL_SUFFIX}").unlink(missing_ok=True)  # left by a killed run
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if not self._committed:
            self.rollback()

    def writer(self, shard: Shard, metadata: dict[str, str]) -> SafetensorsWriter:
        """The writer of one shard (use it as a context manager, then `finish()` it); committed by `commit()`."""
        writer = SafetensorsWriter(self.folder / shard.path.name, list(shard.tensors), metadata, shard.path)
        self._writers.append(writer)
        return writer

    def commit(self, index_metadata: dict[str, object]) -> None:
        """Make the new output appear: shards renamed into place; for a folder, then the index and the extra
        files written into the staging folder, then one publish."""
        for writer in self._writers:
            writer.commit()
        if self.out.is_folder:
            target = self.out.target
            if self.out.index_path is not None:
                write_index(self.staging / INDEX_FILE, self.out.shards, index_metadata, self.out.index_path)
            for name, data in self.extra.contents() if self.extra is not None else ():
                write_atomically(self.staging / name, data, target / name)
            replaced = {p.name for p in existing_model_files(target)} | set(self.extra.names if self.extra else ())
            try:
                publish(self.staging, target, replaced)
            except OSError as e:
                raise OutputError(f"{target}: cannot put the new folder in place: {e.strerror or e}") from None
        self._committed = True

    def rollback(self) -> None:
        """Remove everything written so far; the target stays as it was."""
        for writer in self._writers:
            writer.discard()
        if self.out.is_folder:
            shutil.rmtree(self.staging, ignore_errors=True)

    def _make_staging(self) -> None:
        """Create the staging folder, after checking that an existing target folder is writable (its
        permissions are the user's word, even though the swap itself would not need them)."""
        target = self.out.target
        try:
            if target.is_dir():
                probe = target / f".{self.out.shards[0].path.name}{PARTIAL_SUFFIX}"
                with open(probe, "wb"):
                    pass
                os.unlink(probe)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir()
        except OSError as e:
            shown = self.out.shards[0].path if target.is_dir() else target
            raise OutputError(f"{shown}: cannot write: {e.strerror or e}") from None
