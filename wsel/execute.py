"""Run a Plan: stream each selected teacher tensor into the output files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from wsel import __version__, provenance
from wsel.checkpoint.dtypes import DTYPES
from wsel.checkpoint.index import INDEX_FILE, SINGLE_FILE
from wsel.checkpoint.output import (
    DEFAULT_MAX_SHARD_SIZE,
    check_target,
    existing_model_files,
    layout,
    write_atomically,
    write_index,
)
from wsel.checkpoint.reader import DEFAULT_BLOCK_BYTES, TensorReader
from wsel.checkpoint.writer import PARTIAL_SUFFIX, OutputTensor, SafetensorsWriter
from wsel.errors import PlanError
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
    `folder` is true)."""
    started = time.perf_counter()
    target = Path(target)
    if not plan.written:
        raise PlanError(f"{target}: nothing to write: every student tensor is excluded")
    check_target(target, plan.teacher.files, force, companion_names(plan), folder)
    tensors = [OutputTensor(t.name, t.dtype, t.shape) for t in plan.written]
    out = layout(target, tensors, max_shard_size, folder)
    shard_metadata = metadata(plan)
    stale = existing_model_files(target) if out.is_folder else []
    remove_partials(target, out.is_folder, companion_names(plan))
    created_folder = out.is_folder and not target.exists()
    if created_folder:
        target.mkdir(parents=True)
    by_name = {t.name: t for t in plan.written}
    writers: list[SafetensorsWriter] = []
    try:
        with TensorReader(block_bytes) as reader:
            for shard in out.shards:
                writer = SafetensorsWriter(shard.path, list(shard.tensors), shard_metadata)
                writers.append(writer)
                with writer:
                    for tensor in shard.tensors:
                        tp = by_name[tensor.name]
                        assert tp.source is not None
                        chunks: Iterable[bytes] = reader.iter_selected(tp.source, tp.selections)
                        if tp.dtype != tp.source.dtype or tp.scale is not None:
                            chunks = transform_chunks(chunks, tp.source.dtype, tp.dtype, tp.scale)
                        writer.write(tensor.name, _reported(chunks, on_progress))
                    writer.finish()
            bytes_read = reader.bytes_read
        # Every shard is complete on disk: only now do they appear under their names, index last.
        for writer in writers:
            writer.commit()
        if out.index_path is not None:
            write_index(out.index_path, out.shards, {"wsel.version": __version__})
        companions = write_companions(plan, target) if out.is_folder else ()
    except BaseException:
        for writer in writers:
            writer.discard()
        if created_folder:
            _remove_if_empty(target)
        raise
    for old in stale:  # --force: files of the previous checkpoint that the new one did not replace
        if old not in out.files:
            old.unlink(missing_ok=True)
    files = out.files + companions
    file_bytes = sum(w.size for w in writers) + sum(f.stat().st_size for f in files[len(writers) :])
    return Stats(
        files=files,
        tensor_bytes=sum(t.nbytes for t in plan.written),
        file_bytes=file_bytes,
        bytes_read=bytes_read,
        seconds=time.perf_counter() - started,
    )


def remove_partials(target: Path, is_folder: bool, extra_names: tuple[str, ...]) -> None:
    """Remove temporary files a killed run left for this output (`.NAME.wsel-partial`; never a
    finished file): the names are fixed, so only files of this output's own kind are touched."""
    if not is_folder:
        (target.parent / f".{target.name}{PARTIAL_SUFFIX}").unlink(missing_ok=True)
        return
    if not target.is_dir():
        return
    ours = {f".{name}{PARTIAL_SUFFIX}" for name in (SINGLE_FILE, INDEX_FILE, *extra_names)}
    for path in target.iterdir():
        shard = path.name.startswith(".model-") and path.name.endswith(f".safetensors{PARTIAL_SUFFIX}")
        if path.name in ours or shard:
            path.unlink(missing_ok=True)


def companion_names(plan: Plan) -> tuple[str, ...]:
    """Files written beside the weights of a folder output: the student's config.json, tokenizer files."""
    names = ("config.json",) if plan.student_config is not None else ()
    return names + tuple(f.name for f in plan.copy_files)


def write_companions(plan: Plan, folder: Path) -> tuple[Path, ...]:
    """config.json (keys sorted, as transformers writes it) and the teacher's tokenizer files, each atomically."""
    written = []
    if plan.student_config is not None:
        text = json.dumps(plan.student_config, indent=2, sort_keys=True) + "\n"
        write_atomically(folder / "config.json", text.encode())
        written.append(folder / "config.json")
    for source in plan.copy_files:
        write_atomically(folder / source.name, source.read_bytes())
        written.append(folder / source.name)
    return tuple(written)


def _reported(chunks: Iterable[bytes], on_progress: ProgressCallback | None) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk
        if on_progress is not None:
            on_progress(len(chunk))


def transform_chunks(chunks: Iterable[bytes], source: str, target: str, scale: float | None) -> Iterator[bytes]:
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


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
