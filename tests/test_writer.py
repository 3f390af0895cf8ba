"""The writer's state machine: every misuse and every failed write leaves no temporary file and nothing under the
final name, and never touches a file already there."""

from __future__ import annotations

import builtins
import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FullDisk

import wsel.checkpoint.writer as writer_module
from wsel.checkpoint.header import read_header
from wsel.checkpoint.writer import OutputTensor, SafetensorsWriter, encode_header
from wsel.errors import OutputError

TENSORS = [OutputTensor("a", "F32", (2,)), OutputTensor("b", "I8", (3,)), OutputTensor("c", "BF16", ())]
DATA = {"a": b"\x01" * 8, "b": b"\x02" * 3, "c": b"\x03" * 2}
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "out.safetensors"


def temp_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.wsel-partial")


def assert_nothing_left(path: Path, old: bytes | None = None) -> None:
    """No temporary file; the final name holds exactly what it held before (nothing, or `old`)."""
    assert not temp_of(path).exists()
    if old is None:
        assert not path.exists()
    else:
        assert path.read_bytes() == old
    assert sorted(p.name for p in path.parent.iterdir()) == ([path.name] if old is not None else [])


def write_all(w: SafetensorsWriter, names: list[str] | None = None) -> None:
    for name in names if names is not None else list(DATA):
        w.write(name, [DATA[name]])


# --- the happy path -----------------------------------------------------------------------------


def test_written_file_is_header_then_data(target: Path) -> None:
    with SafetensorsWriter(target, TENSORS, {"format": "pt"}) as w:
        assert w.temp_path == temp_of(target)
        assert temp_of(target).exists() and not target.exists()
        assert w.write("a", [b"\x01" * 3, b"", b"\x01" * 5]) == 8
        assert w.write("b", iter([DATA["b"]])) == 3
        assert w.write("c", (bytes([3]) * 1 for _ in range(2))) == 2
        w.finish()
    assert temp_of(target).exists() and not target.exists()  # finished: waits for commit()
    w.commit()
    expected = encode_header(TENSORS, {"format": "pt"}) + DATA["a"] + DATA["b"] + DATA["c"]
    assert target.read_bytes() == expected
    assert w.size == len(expected)
    assert_nothing_left(target, expected)
    header = read_header(target)
    assert [(t.name, t.dtype, t.shape) for t in header.tensors] == [(t.name, t.dtype, t.shape) for t in TENSORS]


def test_commit_replaces_an_existing_file(target: Path) -> None:
    target.write_bytes(b"old checkpoint")
    with SafetensorsWriter(target, TENSORS, {}) as w:
        write_all(w)
        w.finish()
    assert target.read_bytes() == b"old checkpoint"  # untouched until commit
    w.commit()
    assert target.read_bytes() == encode_header(TENSORS, {}) + b"".join(DATA.values())
    assert not temp_of(target).exists()


def test_discard_after_finish_removes_the_temp_file(target: Path) -> None:
    target.write_bytes(b"old")
    with SafetensorsWriter(target, TENSORS, {}) as w:
        write_all(w)
        w.finish()
    w.discard()
    assert_nothing_left(target, b"old")
    with pytest.raises(ValueError) as exc:
        w.commit()
    assert str(exc.value) == f"{target}: writer is failed, expected finished"


def test_discard_after_commit_keeps_the_file(target: Path) -> None:
    with SafetensorsWriter(target, TENSORS, {}) as w:
        write_all(w)
        w.finish()
    w.commit()
    w.discard()
    assert target.read_bytes() == encode_header(TENSORS, {}) + b"".join(DATA.values())


# --- misuse -------------------------------------------------------------------------------------


@pytest.mark.parametrize("existing", [None, b"old checkpoint"], ids=["no-file", "existing-file"])
def test_out_of_order_tensor(target: Path, existing: bytes | None) -> None:
    if existing is not None:
        target.write_bytes(existing)
    with pytest.raises(ValueError) as exc:
        with SafetensorsWriter(target, TENSORS, {}) as w:
            w.write("a", [DATA["a"]])
            w.write("c", [DATA["c"]])
    assert str(exc.value) == f"{target}: tensor 'c' written out of order; expected 'b'"
    assert_nothing_left(target, existing)


def test_unknown_tensor_after_the_last_one(target: Path) -> None:
    with pytest.raises(ValueError) as exc:
        with SafetensorsWriter(target, TENSORS, {}) as w:
            write_all(w)
            w.write("zzz", [b"\0"])
    assert str(exc.value) == f"{target}: tensor 'zzz' is not in the header"
    assert_nothing_left(target)


def test_unknown_tensor_before_the_last_one(target: Path) -> None:
    with pytest.raises(ValueError) as exc:
        with SafetensorsWriter(target, TENSORS, {}) as w:
            w.write("zzz", [b"\0"])
    assert str(exc.value) == f"{target}: tensor 'zzz' written out of order; expected 'a'"
    assert_nothing_left(target)


@pytest.mark.parametrize(
    ("chunks", "written"),
    [
        ([b"\0" * 7], 7),  # one byte short
        ([], 0),  # nothing at all
        ([b"\0" * 4, b"\0" * 5], 9),  # one byte too many, in the second chunk
        ([b"\0" * 8, b"\0"], 9),  # the exact size, then one more chunk
    ],
    ids=["short", "empty", "long", "extra-chunk"],
)
def test_wrong_byte_count(target: Path, chunks: list[bytes], written: int) -> None:
    with SafetensorsWriter(target, TENSORS, {}) as w:
        with pytest.raises(ValueError) as exc:
            w.write("a", iter(chunks))
        assert str(exc.value) == f"{target}: tensor 'a' got {written} bytes, header says 8"
        assert_nothing_left(target)  # removed at once, not only when the context exits
        with pytest.raises(ValueError) as exc:
            w.write("b", [DATA["b"]])
        assert str(exc.value) == f"{target}: writer is failed, expected data"
        with pytest.raises(ValueError) as exc:
            w.finish()
        assert str(exc.value) == f"{target}: writer is failed, expected data"
    assert_nothing_left(target)


def test_too_many_bytes_stop_the_chunk_iterator(target: Path) -> None:
    pulled = []

    def chunks() -> Iterator[bytes]:
        for i in range(100):
            pulled.append(i)
            yield b"\0" * 4

    with pytest.raises(ValueError):
        with SafetensorsWriter(target, TENSORS, {}) as w:
            w.write("a", chunks())
    assert pulled == [0, 1, 2]  # the third chunk overflows; no more are pulled
    assert_nothing_left(target)


@pytest.mark.parametrize(("written", "missing"), [([], 3), (["a", "b"], 1)])
def test_finish_with_tensors_missing(target: Path, written: list[str], missing: int) -> None:
    with SafetensorsWriter(target, TENSORS, {}) as w:
        write_all(w, written)
        with pytest.raises(ValueError) as exc:
            w.finish()
        assert str(exc.value) == f"{target}: {missing} tensors were never written"
        assert_nothing_left(target)
    assert_nothing_left(target)


def test_commit_before_finish(target: Path) -> None:
    target.write_bytes(b"old")
    with pytest.raises(ValueError) as exc:
        with SafetensorsWriter(target, TENSORS, {}) as w:
            write_all(w)
            w.commit()
    assert str(exc.value) == f"{target}: writer is data, expected finished"
    assert_nothing_left(target, b"old")


def test_write_after_finish(target: Path) -> None:
    with SafetensorsWriter(target, TENSORS, {}) as w:
        write_all(w)
        w.finish()
        with pytest.raises(ValueError) as exc:
            w.write("a", [DATA["a"]])
        assert str(exc.value) == f"{target}: writer is finished, expected data"
    w.commit()  # the misuse did not spoil the finished file
    assert target.read_bytes() == encode_header(TENSORS, {}) + b"".join(DATA.values())


def test_write_outside_the_context(target: Path) -> None:
    w = SafetensorsWriter(target, TENSORS, {})
    with pytest.raises(ValueError) as exc:
        w.write("a", [DATA["a"]])
    assert str(exc.value) == f"{target}: writer is new, expected data"
    assert_nothing_left(target)


def test_leaving_the_context_unfinished_removes_the_temp_file(target: Path) -> None:
    target.write_bytes(b"old")
    with SafetensorsWriter(target, TENSORS, {}) as w:
        write_all(w)
    assert_nothing_left(target, b"old")
    with pytest.raises(ValueError) as exc:
        w.finish()
    assert str(exc.value) == f"{target}: writer is failed, expected data"


def test_exception_in_the_context_removes_the_temp_file(target: Path) -> None:
    with pytest.raises(KeyError):
        with SafetensorsWriter(target, TENSORS, {}) as w:
            w.write("a", [DATA["a"]])
            raise KeyError("boom")
    assert_nothing_left(target)


# --- failed writes ------------------------------------------------------------------------------


@pytest.mark.parametrize("existing", [None, b"old checkpoint"], ids=["no-file", "existing-file"])
def test_fsync_failure_is_an_output_error(
    target: Path, monkeypatch: pytest.MonkeyPatch, existing: bytes | None
) -> None:
    if existing is not None:
        target.write_bytes(existing)

    def chunks(name: str) -> Iterator[bytes]:
        yield from (DATA[name][i : i + 1] for i in range(len(DATA[name])))

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError) as exc:
        with SafetensorsWriter(target, TENSORS, {}) as w:
            for name in DATA:
                w.write(name, chunks(name))
            w.finish()
    assert str(exc.value) == f"{target}: cannot write: No space left on device"
    assert_nothing_left(target, existing)


def disk_with_room(monkeypatch: pytest.MonkeyPatch, room: int) -> None:
    """Files the writer opens accept `room` bytes (the module's `open` shadows the builtin)."""
    monkeypatch.setattr(writer_module, "open", lambda *a, **k: FullDisk(builtins.open(*a, **k), room), raising=False)


@pytest.mark.parametrize("existing", [None, b"old checkpoint"], ids=["no-file", "existing-file"])
@pytest.mark.parametrize("room", [0, len(encode_header(TENSORS, {})) + 9], ids=["header", "data"])
def test_disk_full_during_write(
    target: Path, monkeypatch: pytest.MonkeyPatch, existing: bytes | None, room: int
) -> None:
    if existing is not None:
        target.write_bytes(existing)
    disk_with_room(monkeypatch, room)
    with pytest.raises(OutputError) as exc:
        with SafetensorsWriter(target, TENSORS, {}) as w:
            write_all(w)
            w.finish()
    assert str(exc.value) == f"{target}: cannot write: No space left on device"
    assert_nothing_left(target, existing)


def test_temp_file_cannot_be_created(tmp_path: Path) -> None:
    target = tmp_path / "missing-folder" / "out.safetensors"
    with pytest.raises(OutputError) as exc:
        with SafetensorsWriter(target, TENSORS, {}):
            pass
    assert str(exc.value) == f"{target}: cannot write: No such file or directory"
    assert not (tmp_path / "missing-folder").exists()


def test_rename_failure_keeps_what_is_under_the_final_name(tmp_path: Path) -> None:
    target = tmp_path / "out.safetensors"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    with SafetensorsWriter(target, TENSORS, {}) as w:
        write_all(w)
        w.finish()
    with pytest.raises(OutputError) as exc:
        w.commit()
    assert str(exc.value) == f"{target}: cannot rename the finished file into place: Is a directory"
    assert not temp_of(target).exists()
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_read_error_from_the_chunk_iterator_is_not_blamed_on_the_output(target: Path) -> None:
    # An OSError raised while producing chunks (reading the teacher) is not a write failure of the output:
    # it must propagate as it is, not become "<output>: cannot write: ...".
    def failing_read() -> Iterator[bytes]:
        yield DATA["a"][:4]
        raise OSError(errno.EIO, "Input/output error", "/teacher/model.safetensors")

    with pytest.raises(OSError) as exc:
        with SafetensorsWriter(target, TENSORS, {}) as w:
            w.write("a", failing_read())
    assert exc.value.errno == errno.EIO
    assert exc.value.filename == "/teacher/model.safetensors"
    assert_nothing_left(target)


# --- the write thread ---------------------------------------------------------------------------------

BIG = [OutputTensor("w", "U8", (64 * 1024,))]


class SlowFile:
    """A file whose write() blocks until released: how far the caller gets shows how much is queued."""

    def __init__(self, file: Any, release: threading.Event, fail: BaseException | None = None) -> None:
        self._file, self.release, self.fail, self.calls = file, release, fail, 0
        self.busy = threading.Event()  # set when a blocked write has begun

    def write(self, data: bytes) -> int:
        self.calls += 1
        if self.calls > 1:  # the header goes through at once, from the caller's thread
            self.busy.set()
            self.release.wait(timeout=10)
            if self.fail is not None:
                raise self.fail
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def slow_disk(monkeypatch: pytest.MonkeyPatch, fail: BaseException | None = None) -> threading.Event:
    release = threading.Event()
    monkeypatch.setattr(
        writer_module, "open", lambda *a, **k: SlowFile(builtins.open(*a, **k), release, fail), raising=False
    )
    return release


def test_chunks_wait_in_a_bounded_queue_while_the_disk_is_busy(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = slow_disk(monkeypatch)
    produced: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(16):
            produced.append(i)
            yield bytes([i]) * 4096

    done = threading.Event()

    def produce() -> None:
        with SafetensorsWriter(target, BIG, {}) as w:
            w.write("w", chunks())
            w.finish()
        w.commit()
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    # One chunk in the (blocked) write, DEPTH in the queue, one waiting to be queued: the rest not produced yet.
    expected = 1 + writer_module._WriteThread.DEPTH + 1
    deadline = time.monotonic() + 5
    while len(produced) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # and no further
    assert len(produced) == expected
    release.set()
    thread.join(timeout=10)
    assert done.is_set()
    data = target.read_bytes()
    assert data[-64 * 1024 :] == b"".join(bytes([i]) * 4096 for i in range(16))


@pytest.mark.parametrize("error", [ENOSPC, ValueError("write to a closed file")], ids=["ENOSPC", "other"])
def test_an_error_of_the_write_thread_reaches_the_caller(
    target: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    slow_disk(monkeypatch, fail=error).set()
    threads = threading.active_count()
    with pytest.raises((OutputError, ValueError)) as exc:
        with SafetensorsWriter(target, BIG, {}) as w:
            w.write("w", (b"\0" * 4096 for _ in range(16)))
            w.finish()
    expected = f"{target}: cannot write: {os.strerror(errno.ENOSPC)}" if error is ENOSPC else str(error)
    assert str(exc.value) == expected
    assert threading.active_count() == threads  # the write thread ended
    assert_nothing_left(target)


def test_interrupted_while_chunks_are_queued(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C while the disk is busy with chunk 0 and chunks 1-3 wait: they are dropped, not written, the
    # thread ends, and nothing is left.
    release = threading.Event()
    files: list[SlowFile] = []

    def slow_open(*a: Any, **k: Any) -> SlowFile:
        files.append(SlowFile(builtins.open(*a, **k), release))
        return files[-1]

    monkeypatch.setattr(writer_module, "open", slow_open, raising=False)
    threads = threading.active_count()

    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"\0" * 4096
        assert files[0].busy.wait(timeout=10)  # the writer thread is inside chunk 0's write (else nothing waits)
        threading.Timer(0.2, release.set).start()  # the disk frees up while we are being interrupted
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with SafetensorsWriter(target, BIG, {}) as w:
            w.write("w", chunks())
    assert release.is_set()  # the writer waited for the write in progress before removing the file
    assert files[0].calls == 2  # the header and chunk 0; the queued chunks were dropped
    assert threading.active_count() == threads
    assert_nothing_left(target)
