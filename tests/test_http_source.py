"""Remote files, piece by piece: `HttpHandle` against the local Hub-like server, through the real client.

Reads are what the reader announces, in order: each byte is fetched once per time it is read (a range read
twice, as tied tensors are, is fetched twice, never three times), requests are split at 8 MiB, reads nobody
announced are fetched when made, and an answer that disagrees with the file (another size) is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hubserver import HubServer

from wsel.errors import CheckpointError
from wsel.sources.httpfile import FIRST_READ_BYTES, PIECE_BYTES, HttpFile
from wsel.sources.session import HttpSession

MIB = 1 << 20


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HubServer, Path, bytes]]:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # whatever the process started with
    data = os.urandom(24 * MIB)
    (tmp_path / "blob.bin").write_bytes(data)
    server = HubServer(files_root=tmp_path).start()
    yield server, tmp_path / "blob.bin", data
    server.stop()


def open_file(server: HubServer) -> tuple[HttpFile, HttpSession]:
    session = HttpSession(4, {"user-agent": "wsel-test"})
    return HttpFile(f"{server.url}/files/blob.bin", "blob.bin", session), session


def read(handle: object, offset: int, length: int) -> bytes:
    out = bytearray(length)
    handle.read_into([(offset, length)], memoryview(out))  # type: ignore[attr-defined]
    return bytes(out)


def data_requests(server: HubServer) -> list[str]:
    """The ranges asked after each file's first request, in the order the server took them."""
    return [r for _, _, r, _ in server.requests if r and not r.startswith("bytes=0-")]


def test_a_range_read_twice_is_fetched_twice_not_more(served: tuple[HubServer, Path, bytes]) -> None:
    server, _, data = served
    file, session = open_file(server)
    with file.open() as handle:
        a, n = 2 * MIB, 3 * MIB
        handle.prefetch(a, n)
        handle.prefetch(a, n)  # the same bytes again (a tied tensor reads its source's)
        assert read(handle, a, n) == data[a : a + n]
        assert read(handle, a, n) == data[a : a + n]
    assert session.traffic.bytes_fetched == FIRST_READ_BYTES + 2 * n
    assert data_requests(server) == [f"bytes={a}-{a + n - 1}"] * 2


def test_reads_follow_the_announced_order_backwards_too(served: tuple[HubServer, Path, bytes]) -> None:
    server, _, data = served
    file, session = open_file(server)
    later, earlier = (10 * MIB, MIB), (4 * MIB, MIB)
    with file.open() as handle:
        handle.prefetch(*later)
        handle.prefetch(*earlier)
        assert read(handle, *later) == data[later[0] : later[0] + MIB]
        assert read(handle, *earlier) == data[earlier[0] : earlier[0] + MIB]
    assert session.traffic.bytes_fetched == FIRST_READ_BYTES + 2 * MIB


def test_large_announcements_go_out_in_pieces_and_reads_nobody_announced_now(
    served: tuple[HubServer, Path, bytes],
) -> None:
    server, _, data = served
    file, session = open_file(server)
    start, n = MIB, 20 * MIB
    with file.open() as handle:
        handle.prefetch(start, n)
        assert read(handle, start, n) == data[start : start + n]
        assert read(handle, 22 * MIB, 1000) == data[22 * MIB : 22 * MIB + 1000]  # never announced
        assert read(handle, 100, 50) == data[100:150]  # inside the first request: no request at all
    pieces = [f"bytes={s}-{min(s + PIECE_BYTES, start + n) - 1}" for s in range(start, start + n, PIECE_BYTES)]
    assert sorted(data_requests(server)) == sorted(
        [*pieces, f"bytes={22 * MIB}-{22 * MIB + 999}"]
    )  # in flight together
    assert session.traffic.bytes_fetched == FIRST_READ_BYTES + n + 1000


def test_a_file_that_changes_size_is_an_error(served: tuple[HubServer, Path, bytes]) -> None:
    server, path, data = served
    file, _ = open_file(server)
    with file.open() as handle:
        path.write_bytes(data[: 20 * MIB])  # replaced by a shorter file (same ETag on this server: the size tells)
        with pytest.raises(CheckpointError) as exc:
            read(handle, MIB, MIB)
    assert str(exc.value) == (
        f"blob.bin: bytes {MIB}-{2 * MIB - 1}: the file changed while it was read (size {24 * MIB} then {20 * MIB})"
    )


def test_idle_worker_threads_end(served: tuple[HubServer, Path, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import wsel.sources.session as session_module

    monkeypatch.setattr(session_module, "IDLE_SECONDS", 0.2)
    server, _, data = served
    file, session = open_file(server)
    with file.open() as handle:
        handle.prefetch(MIB, 9 * MIB)
        assert read(handle, MIB, 9 * MIB) == data[MIB : 10 * MIB]
    assert session.workers == 2  # two pieces in flight: two threads (of at most 4)
    time.sleep(1.0)
    assert session.workers == 0
