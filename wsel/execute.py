"""Run a Plan: stream each selected teacher tensor into the output files."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from wsel import __version__, provenance
from wsel.checkpoint.output import DEFAULT_MAX_SHARD_SIZE, check_target, layout
from wsel.checkpoint.reader import DEFAULT_BLOCK_BYTES, Chunk, Read, TensorReader, read_ranges
from wsel.checkpoint.staged import StagedOutput
from wsel.checkpoint.transform import transform_chunks
from wsel.checkpoint.writer import OutputTensor
from wsel.errors import PlanError
from wsel.layers import kept_by_group
from wsel.plan.model import Plan, WrittenTensor
from wsel.stats import ProgressCallback, Stats


def metadata(plan: Plan) -> dict[str, str]:
    """safetensors metadata: `format` for loaders, then how the file was made (no timestamps)."""
    return {
        "format": "pt",
        "wsel.version": __version__,
        "wsel.teacher": ",".join(f.name for f in plan.teacher.files),
        "wsel.layers": str(plan.options.layers),
        "wsel.elements": plan.options.elements,
        "wsel.layer_map": json.dumps(kept_by_group(plan.layer_maps)),
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
    published in one step (`wsel.checkpoint.staged`). A failure or interruption leaves `target` as it was.
    `on_progress` is called with the number of teacher bytes of each read (their total: `read_schedule`)."""
    started = time.perf_counter()
    target = Path(target)
    if not plan.written:
        raise PlanError(f"{target}: nothing to write: every student tensor is excluded")
    extra_names = plan.folder_files.names if plan.folder_files is not None else ()
    teacher_files = tuple(path for f in plan.teacher.files if (path := f.local_path) is not None)
    check_target(target, teacher_files, force, extra_names, folder)
    out = layout(target, [OutputTensor(t.name, t.dtype, t.shape) for t in plan.written], max_shard_size, folder)
    by_name = {t.name: t for t in plan.written}
    shard_metadata = metadata(plan)
    before = replace(plan.teacher.traffic())
    with StagedOutput(out, plan.folder_files) as staged:
        with TensorReader(block_bytes) as reader:  # the teacher's files are closed before the output appears
            reader.on_read = on_progress
            reader.expect(_reads([by_name[t.name] for shard in out.shards for t in shard.tensors], block_bytes))
            for shard in out.shards:
                with staged.writer(shard, shard_metadata) as writer:
                    for tensor in shard.tensors:
                        writer.write(tensor.name, _chunks(reader, by_name[tensor.name]))
                    writer.finish()
            bytes_read = reader.bytes_read
        staged.commit({"wsel.version": __version__})
    traffic = plan.teacher.traffic()
    files = out.files + (tuple(target / name for name in extra_names) if out.is_folder else ())
    return Stats(
        files=files,
        tensor_bytes=sum(t.nbytes for t in plan.written),
        file_bytes=sum(f.stat().st_size for f in files),
        bytes_read=bytes_read,
        seconds=time.perf_counter() - started,
        bytes_fetched=traffic.bytes_fetched - before.bytes_fetched,
        requests=traffic.requests - before.requests,
        retries=traffic.retries - before.retries,
    )


def read_schedule(plan: Plan, block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[Read]:
    """The teacher byte ranges (file, offset, length) that running `plan` reads, in order."""
    return _reads(plan.written, block_bytes)


def _reads(tensors: Iterable[WrittenTensor], block_bytes: int) -> Iterator[Read]:
    for t in tensors:
        for offset, length in read_ranges(t.source, t.selections, block_bytes):
            yield t.source.file, offset, length


def _chunks(reader: TensorReader, tensor: WrittenTensor) -> Iterable[Chunk]:
    """The bytes written for one tensor: its selection of the teacher, cast and rescaled when asked."""
    chunks: Iterable[Chunk] = reader.iter_selected(tensor.source, tensor.selections)
    if tensor.dtype != tensor.source.dtype or tensor.scale is not None:
        chunks = transform_chunks(chunks, tensor.source.dtype, tensor.dtype, tensor.scale)
    return chunks
