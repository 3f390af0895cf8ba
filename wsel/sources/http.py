"""Files on an HTTP server, read by range requests: only the bytes a plan needs cross the network.

Every read is a `GET` with `Range: bytes=a-b` that must come back `206` with exactly that `Content-Range`
and body; a `200` (the whole file), a short or different range, or an ETag that changes between requests
is an error, never data. Transient failures (connection errors, timeouts, 429, 5xx) are retried per
request with huggingface_hub's conventions (5 retries, waits from 1 s doubling to at most 8 s, or the
server's Retry-After up to 60 s). Reads announced ahead (`prefetch`) are fetched by worker threads, several
requests in flight, ranges closer than MERGE_GAP_BYTES merged and requests split at PIECE_BYTES, into
memory bounded by the reader's readahead window.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from wsel.errors import CheckpointError
from wsel.sources.base import MAX_SMALL_FILE_BYTES, Folder, Handle, Source, Traffic, too_large

PIECE_BYTES = 8 << 20  # the largest request: big enough to amortize a round trip, small enough to overlap
# Announced reads closer than this are fetched by one request, the gap read too: a gap about the size of a
# request's own headers costs less to fetch than a request of its own.
MERGE_GAP_BYTES = 1 << 10
FIRST_READ_BYTES = 64 << 10  # the first request of a file: its header, usually whole (a second one if not)
DEFAULT_CONNECTIONS = 8  # requests in flight per run (`--connections`); see README "Remote teachers"
RETRIES = 5  # huggingface_hub's http_backoff defaults, for range requests too
FIRST_WAIT, MAX_WAIT, MAX_RETRY_AFTER = 1.0, 8.0, 60.0
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_T = TypeVar("_T")


def download_timeout() -> float:
    """Seconds a request may wait for bytes (huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT, default 10),
    read when needed so that a changed environment takes effect."""
    try:
        return float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or 10)
    except ValueError:
        return 10.0


class HttpSession:
    """One run's HTTP client: huggingface_hub's session (proxies, offline mode, its client factory),
    headers (the Hub token only for the Hub's own host), worker threads for reads ahead, and the traffic."""

    def __init__(self, connections: int = DEFAULT_CONNECTIONS, auth: tuple[str, dict[str, str]] | None = None) -> None:
        from huggingface_hub import get_session  # deferred: only remote teachers load it

        from wsel import __version__

        if connections < 1:
            raise CheckpointError(f"--connections {connections}: at least one connection is needed")
        self.client = get_session()
        self.connections = connections
        self.headers = {"user-agent": f"wsel/{__version__}", "accept-encoding": "identity"}
        self.auth = auth  # (the Hub's URL prefix, its headers): sent only to URLs under that prefix
        self.traffic = Traffic()
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[Future[Any], Callable[[], Any]] | None] = queue.Queue()
        self._workers: list[threading.Thread] = []

    def submit(self, job: Callable[[], _T]) -> Future[_T]:
        """Run `job` on a worker thread (daemons: a stalled request never keeps the process alive)."""
        future: Future[_T] = Future()
        if len(self._workers) < self.connections:
            worker = threading.Thread(target=self._work, name="wsel-http", daemon=True)
            self._workers.append(worker)
            worker.start()
        self._jobs.put((future, job))
        return future

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as e:  # handed to whoever waits for the result
                future.set_exception(e)

    def count(self, fetched: int = 0, requests: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.traffic.bytes_fetched += fetched
            self.traffic.requests += requests
            self.traffic.retries += retries

    def get(self, url: str, byte_range: tuple[int, int] | None, etag: ETag) -> tuple[bytes, int]:
        """The bytes `byte_range` (first, last: inclusive) of `url`, or the whole (small) file, and the file's
        size; retried when the failure is transient. Raises CheckpointError naming the URL, the range and why."""
        what = f"{url}: bytes {byte_range[0]}-{byte_range[1]}" if byte_range else url
        headers = dict(self.headers)
        if self.auth is not None and url.startswith(self.auth[0]):
            headers.update(self.auth[1])
        if byte_range is not None:
            headers["range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        limit = byte_range[1] - byte_range[0] + 1 if byte_range else MAX_SMALL_FILE_BYTES
        return self._retried(lambda: self._once(url, headers, limit, what, byte_range, etag), what)

    def exists(self, url: str) -> bool:
        """Whether `url` names a file (HEAD: 200 yes, 404 no; anything else is an error)."""
        headers = dict(self.headers)
        if self.auth is not None and url.startswith(self.auth[0]):
            headers.update(self.auth[1])

        def head() -> tuple[bool, int]:
            response = self.client.head(url, headers=headers, timeout=download_timeout(), follow_redirects=True)
            self.count(requests=1)
            if response.status_code in (200, 404):
                return response.status_code == 200, 0
            if response.status_code in _TRANSIENT:
                raise _Transient(f"HTTP {response.status_code}", response.headers.get("retry-after"))
            self._refuse(response.status_code, url)
            raise CheckpointError(f"{url}: HTTP {response.status_code}")

        return self._retried(head, url)[0]

    def _retried(self, attempt_once: Callable[[], tuple[_T, int]], what: str) -> tuple[_T, int]:
        import httpx2

        cause = ""
        for attempt in range(RETRIES + 1):
            if attempt:
                self.count(retries=1)
            wait = min(FIRST_WAIT * 2**attempt, MAX_WAIT)
            try:
                return attempt_once()
            except (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError) as e:
                cause = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            except _Transient as e:
                cause, wait = e.cause, _retry_after(e.retry_after, wait)
            if attempt < RETRIES:
                time.sleep(wait)
        raise CheckpointError(f"{what}: {cause} (after {RETRIES} retries)")

    def _once(
        self,
        url: str,
        headers: dict[str, str],
        limit: int,
        what: str,
        byte_range: tuple[int, int] | None,
        etag: ETag,
    ) -> tuple[bytes, int]:
        """One request; its body read up to `limit` bytes (a longer one is refused, not buffered)."""
        with self.client.stream("GET", url, headers=headers, timeout=download_timeout(), follow_redirects=True) as r:
            self.count(requests=1)
            if r.status_code in _TRANSIENT:
                raise _Transient(f"HTTP {r.status_code}", r.headers.get("retry-after"))
            self._refuse(r.status_code, what)
            body = bytearray()
            for chunk in r.iter_bytes():
                self.count(fetched=len(chunk))
                body += chunk
                if len(body) > limit:
                    break
            return self._checked(r.status_code, r.headers, bytes(body), limit, what, byte_range, etag)

    @staticmethod
    def _refuse(status: int, what: str) -> None:
        if status in (401, 403):
            raise CheckpointError(
                f"{what}: HTTP {status}: not allowed; for a gated or private Hub repo, accept its licence on "
                "its page and set HF_TOKEN (or log in with `hf auth login`)"
            )
        if status == 404:
            raise CheckpointError(f"{what}: HTTP 404: no such file")

    @staticmethod
    def _checked(
        status: int,
        response_headers: Any,
        body: bytes,
        limit: int,
        what: str,
        byte_range: tuple[int, int] | None,
        etag: ETag,
    ) -> tuple[bytes, int]:
        """The body, when the answer is the one asked for (refusals and transient answers are out already)."""
        if byte_range is None:
            if status != 200:
                raise CheckpointError(f"{what}: HTTP {status}")
            if len(body) > limit:
                raise too_large(what, len(body))
            return body, len(body)
        if status == 200:
            raise CheckpointError(
                f"{what}: the server sent the whole file (HTTP 200) for a range request; it must answer "
                "ranges (206), or download the teacher and name the local copy"
            )
        if status != 206:
            raise CheckpointError(f"{what}: HTTP {status}, expected 206 for a range request")
        m = _CONTENT_RANGE.match(response_headers.get("content-range", ""))
        if m is None:
            raise CheckpointError(f"{what}: the answer has no valid Content-Range")
        first, last, size = (int(g) for g in m.groups())
        if (first, last) != (byte_range[0], min(byte_range[1], size - 1)) or len(body) != last - first + 1:
            raise CheckpointError(
                f"{what}: the server sent bytes {first}-{last} ({len(body)} bytes) instead of the range asked"
            )
        etag.check(response_headers.get("etag"), what)
        return body, size

    def close(self) -> None:
        for _ in self._workers:
            self._jobs.put(None)


_TRANSIENT = (429, 500, 502, 503, 504)


class _Transient(Exception):
    """An answer worth retrying (429, 5xx), with the server's Retry-After if it gave one."""

    def __init__(self, cause: str, retry_after: str | None) -> None:
        super().__init__(cause)
        self.cause, self.retry_after = cause, retry_after


def _retry_after(header: str | None, default: float) -> float:
    try:
        return min(max(float(header), 0.0), MAX_RETRY_AFTER) if header else default
    except ValueError:
        return default


@dataclass
class ETag:
    """The ETag a file is read at: every later answer must carry the same one (the file did not change)."""

    value: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, seen: str | None, what: str) -> None:
        if seen is None:
            return
        with self._lock:
            if self.value is None:
                self.value = seen
            elif seen != self.value:
                raise CheckpointError(
                    f"{what}: the file changed while it was read (ETag {self.value} then {seen}); run again"
                )


@dataclass
class _Learned:
    """What the first request of a file taught: its size and ETag (shared by every handle of the file)."""

    size: int | None = None
    etag: ETag = field(default_factory=ETag)
    head: bytes = b""  # the first bytes, kept until the header is parsed


@dataclass(frozen=True)
class HttpFile(Source):
    # A request costs a round trip (tens of ms), shared by the connections in flight: at 100 MB/s, 20 ms and 8
    # connections that is the time of 250 KB. Dropped rows smaller than this are fetched and discarded.
    min_skip_bytes: ClassVar[int] = 256 << 10

    url: str
    shown_as: str  # how messages name it: the URL, or `hf://org/name/file` for the Hub
    session: HttpSession = field(compare=False, repr=False)
    learned: _Learned = field(default_factory=_Learned, compare=False, repr=False)

    @property
    def location(self) -> str:
        return self.shown_as

    @property
    def name(self) -> str:
        return self.shown_as.rstrip("/").rsplit("/", 1)[-1]

    def open(self) -> HttpHandle:
        return HttpHandle(self)


@dataclass
class _Piece:
    first: int
    end: int  # exclusive
    data: Future[bytes]


class HttpHandle(Handle):
    first_read_bytes = FIRST_READ_BYTES

    def __init__(self, file: HttpFile) -> None:
        self.file, self.session, self.learned = file, file.session, file.learned
        if self.learned.size is None:  # the first request teaches the size; its bytes (the header) are kept
            self.learned.head, self.learned.size = self._get(0, FIRST_READ_BYTES)
        self.size = self.learned.size
        self._pieces: list[_Piece] = []  # requested ahead, in file order
        self._span: tuple[int, int] | None = None  # announced reads not yet requested (merged)

    def _get(self, first: int, end: int) -> tuple[bytes, int]:
        return self.session.get(self.file.url, (first, end - 1), self.learned.etag)

    def prefetch(self, offset: int, length: int) -> None:
        have = len(self.learned.head)  # the first request's bytes are at hand already
        if offset < have:
            offset, length = have, offset + length - have
        if length <= 0:
            return
        if self._span is not None and self._span[1] <= offset <= self._span[1] + MERGE_GAP_BYTES:
            self._span = (self._span[0], offset + length)
        else:
            self._request_span()
            self._span = (offset, offset + length)
        while self._span[1] - self._span[0] > PIECE_BYTES:  # full pieces go out at once
            start = self._span[0]
            self._request(start, start + PIECE_BYTES)
            self._span = (start + PIECE_BYTES, self._span[1])

    def _request_span(self) -> None:
        if self._span is not None:
            self._request(*self._span)
            self._span = None

    def _request(self, first: int, end: int) -> None:
        url, etag = self.file.url, self.learned.etag
        future = self.session.submit(lambda: self.session.get(url, (first, end - 1), etag)[0])
        self._pieces.append(_Piece(first, end, future))

    def read_into(self, ranges: Sequence[tuple[int, int]], out: memoryview) -> None:
        self._request_span()  # what was announced goes out before we wait for any of it
        at = 0
        for offset, length in ranges:
            self._copy(offset, offset + length, out[at : at + length])
            at += length

    def _copy(self, first: int, end: int, out: memoryview) -> None:
        """Bytes [first, end) into `out`: from the first request's bytes, from pieces fetched ahead (waiting for
        them), and for anything not announced, from a request made now."""
        head = self.learned.head
        position = first
        while position < end:
            if position < len(head):
                n = min(end, len(head)) - position
                out[position - first : position - first + n] = head[position : position + n]
                position += n
                continue
            piece = next((p for p in self._pieces if p.first <= position < p.end), None)
            data: memoryview
            if piece is None:  # not announced: fetch up to the next piece that is (or the end)
                stop = min([end, *(p.first for p in self._pieces if p.first > position)])
                data = memoryview(self._get(position, stop)[0])
            else:
                data = memoryview(_result(piece.data))[position - piece.first :]  # a view: no copy
            n = min(end - position, len(data))
            out[position - first : position - first + n] = data[:n]
            position += n
        self._pieces = [p for p in self._pieces if p.end > end]  # reads go forward: what is behind is done

    def close(self) -> None:
        for piece in self._pieces:
            piece.data.cancel()
        self._pieces.clear()


def _result(future: Future[_T]) -> _T:
    """The future's result; waits in short slices so that Ctrl-C stops the run at once."""
    while True:
        try:
            return future.result(timeout=0.2)
        except TimeoutError:
            continue


class UrlFolder(Folder):
    """The folder of a URL (an index's shards and config.json are found relative to it). It cannot be
    listed, so a file is assumed present until reading it says otherwise."""

    def __init__(self, base: str, session: HttpSession) -> None:
        self.base = base.rstrip("/") + "/"
        self.session = session
        self._files: dict[str, HttpFile] = {}
        self._exists: dict[str, bool] = {}  # HEAD answers, asked once per name

    @property
    def location(self) -> str:
        return self.base

    def names(self) -> None:
        return None

    def has(self, name: str) -> bool:
        if name not in self._exists:
            self._exists[name] = name in self._files or self.session.exists(self.base + name)
        return self._exists[name]

    def source(self, name: str) -> HttpFile:
        if name not in self._files:
            self._files[name] = HttpFile(self.base + name, self.base + name, self.session)
        return self._files[name]

    def read_small(self, name: str) -> bytes:
        data, size = self.session.get(self.base + name, None, ETag())
        if size > MAX_SMALL_FILE_BYTES:
            raise too_large(self.where(name), size)
        return data

    def traffic(self) -> Traffic:
        return self.session.traffic

    def describe(self) -> dict[str, Any]:
        return {"url": self.base}
