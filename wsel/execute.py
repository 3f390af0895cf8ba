"""Run a Plan: stream each selected teacher tensor into the output files."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from wsel import __version__, provenance
from wsel.checkpoint.dtypes import DTYPES
from wsel.checkpoint.index import INDEX_FILE
from wsel.checkpoint.output import (
    DEFAULT_MAX_SHARD_SIZE,
    OutputLayout,
    check_target,
    existing_model_files,
    layout,
    write_atomically,
    write_index,
)
from wsel.checkpoint.publish import publish, recover, staging_folder
from wsel.checkpoint.reader import DEFAULT_BLOCK_BYTES, Chunk, TensorReader, read_ranges
from wsel.checkpoint.writer import PARTIAL_SUFFIX, OutputTensor, SafetensorsWriter
from wsel.errors import OutputError, PlanError
from wsel.plan import Plan

ProgressCallback = Callable[[int], None]  # called with the number of tensor bytes just written


@dataclass(frozen=True)
class Stats:
    files: tuple[Path, ...]  # written, index last
    tensor_bytes: int  # tensor data written
    file_bytes: int  # including headers (and the index)
    bytes_read: int  # teacher bytes read
    seconds: float


def metadata(plan: Plan) -> dict[str, str]:
    """safetensors metadata: `format` for loaders, then how the file was made (no timestamps)."""
    return {
        "format": "pt",
        "wsel.version": __version__,
        "wsel.teacher": ",".join(f.name for f in plan.teacher.files),
        "wsel.layers": plan.options.layers,
        "wsel.elements": plan.options.elements,
        "wsel.layer_map": json.dumps({m.group: [t for _, t in m.mapping] for m in plan.layer_maps}),
        provenance.METADATA_KEY: provenance.encode(provenance.build(plan)),
    }


def run(
    plan: Plan,
    target: Path,
    *,
    force: bool = False,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    on_progress: ProgressCallback | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    folder: bool | None = None,
) -> Stats:
    """Write the student described by `plan` to `target`: a .safetensors file, or a folder (always when
    `folder` is true). A file appears by an atomic rename; a folder is staged beside the target and
    published in one step (`wsel.checkpoint.publish`). A failure or interruption leaves `target` as it was."""
    started = time.perf_counter()
    target = Path(target)
    if not plan.written:
        raise PlanError(f"{target}: nothing to write: every student tensor is excluded")
    extra_names = companion_names(plan)
    check_target(target, plan.teacher.files, force, extra_names, folder)
    out = layout(target, [OutputTensor(t.name, t.dtype, t.shape) for t in plan.written], max_shard_size, folder)
    staging = staging_folder(target)
    if out.is_folder:
        recover(target)
        _make_staging(staging, target, out)
    else:
        (target.parent / f".{target.name}{PARTIAL_SUFFIX}").unlink(missing_ok=True)  # left by a killed run
    writers: list[SafetensorsWriter] = []
    try:
        bytes_read = _write_shards(plan, out, staging if out.is_folder else target.parent, writers, block_bytes,
                                   on_progress)  # fmt: skip
        for writer in writers:
            writer.commit()
        if out.is_folder:
            if out.index_path is not None:
                write_index(staging / INDEX_FILE, out.shards, {"wsel.version": __version__}, out.index_path)
            write_companions(plan, staging, target)
            replaced = {p.name for p in existing_model_files(target)} | set(extra_names)
            try:
                publish(staging, target, replaced)
            except OSError as e:
                raise OutputError(f"{target}: cannot put the new folder in place: {e.strerror or e}") from None
    except BaseException:
        for writer in writers:
            writer.discard()
        if out.is_folder:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    files = out.files + (tuple(target / name for name in extra_names) if out.is_folder else ())
    return Stats(
        files=files,
        tensor_bytes=sum(t.nbytes for t in plan.written),
        file_bytes=sum(f.stat().st_size for f in files),
        bytes_read=bytes_read,
        seconds=time.perf_counter() - started,
    )


def _make_staging(staging: Path, target: Path, out: OutputLayout) -> None:
    """Create the staging folder, after checking that an existing target folder is writable (its
    permissions are the user's word, even though the swap itself would not need them)."""
    try:
        if target.is_dir():
            probe = target / f".{out.shards[0].path.name}{PARTIAL_SUFFIX}"
            with open(probe, "wb"):
                pass
            os.unlink(probe)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as e:
        shown = out.shards[0].path if target.is_dir() else target
        raise OutputError(f"{shown}: cannot write: {e.strerror or e}") from None


def _write_shards(
    plan: Plan,
    out: OutputLayout,
    folder: Path,
    writers: list[SafetensorsWriter],
    block_bytes: int,
    on_progress: ProgressCallback | None,
) -> int:
    """Stream every tensor into its shard (finished and fsynced, not yet committed); teacher bytes read."""
    by_name = {t.name: t for t in plan.written}
    shard_metadata = metadata(plan)
    with TensorReader(block_bytes) as reader:
        order = [by_name[t.name] for shard in out.shards for t in shard.tensors]
        reader.expect(
            (tp.source.file, offset, length)
            for tp in order
            if tp.source is not None
            for offset, length in read_ranges(tp.source, tp.selections, block_bytes)
        )
        for shard in out.shards:
            writer = SafetensorsWriter(folder / shard.path.name, list(shard.tensors), shard_metadata, shard.path)
            writers.append(writer)
            with writer:
                for tensor in shard.tensors:
                    tp = by_name[tensor.name]
                    assert tp.source is not None
                    chunks: Iterable[Chunk] = reader.iter_selected(tp.source, tp.selections)
                    if tp.dtype != tp.source.dtype or tp.scale is not None:
                        chunks = transform_chunks(chunks, tp.source.dtype, tp.dtype, tp.scale)
                    writer.write(tensor.name, _reported(chunks, on_progress))
                writer.finish()
        return reader.bytes_read


def companion_names(plan: Plan) -> tuple[str, ...]:
    """Files written beside the weights of a folder output: the student's config.json, tokenizer files."""
    names = ("config.json",) if plan.student_config is not None else ()
    return names + tuple(f.name for f in plan.copy_files)


def write_companions(plan: Plan, folder: Path, shown_in: Path) -> None:
    """config.json (keys sorted, as transformers writes it) and the teacher's tokenizer files."""
    if plan.student_config is not None:
        text = json.dumps(plan.student_config, indent=2, sort_keys=True) + "\n"
        write_atomically(folder / "config.json", text.encode(), shown_in / "config.json")
    for source in plan.copy_files:
        write_atomically(folder / source.name, source.read_bytes(), shown_in / source.name)


def _reported(chunks: Iterable[Chunk], on_progress: ProgressCallback | None) -> Iterator[Chunk]:
    for chunk in chunks:
        yield chunk
        if on_progress is not None:
            on_progress(len(chunk))


def transform_chunks(chunks: Iterable[Chunk], source: str, target: str, scale: float | None) -> Iterator[Chunk]:
    """Change element values, only when the user asked: cast (--dtype) and/or multiply (--rescale).

    Scaling is computed by torch in float32 (float64 for F64 tensors), then rounded to `target`.
    """
    import torch  # deferred: only casting and rescaling need torch

    src, dst = getattr(torch, DTYPES[source].torch_name), getattr(torch, DTYPES[target].torch_name)
    for chunk in chunks:
        if not chunk:
            continue
        values = torch.frombuffer(bytearray(chunk), dtype=src)
        if scale is not None:
            values = values.to(torch.float64 if src == torch.float64 else torch.float32) * scale
        yield values.to(dst).view(torch.uint8).numpy().tobytes()
