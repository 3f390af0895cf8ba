"""HTTP for remote teachers: huggingface_hub's client, answers checked before they are used, transient failures
retried with huggingface_hub's conventions, and the worker threads that keep several requests in flight.

A range answer must be `206` with exactly the `Content-Range` asked, the file's size and its ETag as first
seen; a `200` (the whole file), another range, another size or ETag is an error, never data. Connection
errors, timeouts and 408, 429, 500, 502, 503, 504 are retried: 5 times, waiting 1, 2, 4, 8, 8 s, or the
server's Retry-After (at most 60 s), as huggingface_hub's `http_backoff` does.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from wsel.errors import CheckpointError
from wsel.sources.base import MAX_SMALL_FILE_BYTES, Traffic, too_large

RETRIES = 5
FIRST_WAIT, MAX_WAIT, MAX_RETRY_AFTER = 1.0, 8.0, 60.0
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)
IDLE_SECONDS = 10.0  # a worker thread with nothing to do for this long ends (a later request starts another)
_CONTENT_RANGE = re.compile(r"^bytes ([0-9]+)-([0-9]+)/([0-9]+)$")
_T = TypeVar("_T")


def download_timeout() -> float:
    """Seconds a request may wait for bytes (huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT, default 10), read
    when needed so that a changed environment takes effect."""
    try:
        return float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or 10)
    except ValueError:
        return 10.0


class Refused(CheckpointError):
    """The server refused (401, 403, 404, 410): not retried. `status` lets a caller try another URL."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class FileState:
    """What the first answers taught about one remote file; every later answer must agree with it."""

    size: int | None = None
    etag: str | None = None
    head: bytes = b""  # the first request's bytes (the header), kept: later reads of them cost nothing
    direct_url: str | None = None  # where the last redirect led (a CDN): later requests go there at once
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def agree(self, size: int, etag: str | None, what: str) -> None:
        with self.lock:
            if self.size is not None and size != self.size:
                raise CheckpointError(f"{what}: the file changed while it was read (size {self.size} then {size})")
            if self.etag is not None and etag != self.etag:
                raise CheckpointError(
                    f"{what}: the file changed while it was read (ETag {self.etag} then {etag}); run again"
                )
            self.size, self.etag = size, etag if self.etag is None else self.etag


class HttpSession:
    """One teacher's HTTP: requests through huggingface_hub's client (its proxies, offline mode and client
    factory), headers (huggingface_hub's user agent; the token only for URLs under the Hub's endpoint),
    worker threads for requests in flight, and the traffic counted."""

    def __init__(
        self, connections: int, headers: dict[str, str], hub_prefix: str = "", hub_auth: dict[str, str] | None = None
    ) -> None:
        if connections < 1:
            raise CheckpointError(f"--connections {connections}: at least one connection is needed")
        self.connections = connections
        self.headers = {**headers, "accept-encoding": "identity"}
        self.hub_prefix, self.hub_auth = hub_prefix, hub_auth or {}
        self.traffic = Traffic()
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = queue.Queue()
        self._workers = 0

    # ------------------------------------------------------------------------------ worker threads

    def submit(self, job: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        """Run `job` on a worker thread: daemons, so a stalled request never keeps the process alive; idle
        ones end, so a library that opens many teachers keeps no threads."""
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        with self._lock:
            self._jobs.put((future, job))
            if self._workers < self.connections:
                self._workers += 1
                threading.Thread(target=self._work, name="wsel-http", daemon=True).start()
        return future

    @property
    def workers(self) -> int:
        """Worker threads alive now."""
        with self._lock:
            return self._workers

    def _work(self) -> None:
        while True:
            try:
                future, job = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._workers -= 1
                        return
                continue
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as e:  # handed to whoever waits for the result
                    future.set_exception(e)
            del future, job  # an idle worker holds no piece

    # ------------------------------------------------------------------------------------ requests

    def count(self, fetched: int = 0, requests: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.traffic.bytes_fetched += fetched
            self.traffic.requests += requests
            self.traffic.retries += retries

    def get_range(self, url: str, first: int, end: int, state: FileState, shown: str) -> tuple[bytearray, str]:
        """Bytes [first, end) of `url` and the URL that answered (after redirects). When `state` knows no size
        yet (the first request), a range past the end is cut at the end, and the size and ETag are learned.
        Messages name the file as `shown` (a CDN's signed URL is not printed)."""
        what = f"{shown}: bytes {first}-{end - 1}"
        headers = self._headers(url) | {"range": f"bytes={first}-{end - 1}"}
        return self._retried(lambda: self._range_once(url, headers, first, end, state, what), what)

    def get_whole(self, url: str) -> bytes:
        """A small file, whole (at most MAX_SMALL_FILE_BYTES)."""
        return bytes(self._retried(lambda: self._whole_once(url, self._headers(url)), url))

    def exists(self, url: str) -> bool:
        """Whether `url` names a file: HEAD 200 yes; 404, 410, and the 401/403/405 of storage that does not
        say whether a key exists, no."""
        headers = self._headers(url)

        def head() -> bool:
            with self._client_errors(url):
                response = self._client().head(url, headers=headers, timeout=download_timeout(), follow_redirects=True)
            self.count(requests=1)
            self._transient(response)
            status: int = response.status_code
            if status in (200, 404, 410, 401, 403, 405):
                return status == 200
            raise CheckpointError(f"{url}: HTTP {status}")

        return self._retried(head, url)

    def _headers(self, url: str) -> dict[str, str]:
        return self.headers | (self.hub_auth if self.hub_prefix and url.startswith(self.hub_prefix) else {})

    @staticmethod
    def _client() -> Any:
        """huggingface_hub's shared client, asked for each request (it replaces it after some failures)."""
        from huggingface_hub import get_session

        return get_session()

    def _range_once(
        self, url: str, headers: dict[str, str], first: int, end: int, state: FileState, what: str
    ) -> tuple[bytearray, str]:
        client = self._client()
        with (
            self._client_errors(what),
            client.stream("GET", url, headers=headers, timeout=download_timeout(), follow_redirects=True) as r,
        ):
            self.count(requests=1)
            self._transient(r)
            self._refuse(r.status_code, what, url)
            if r.status_code == 416 and first == 0 and state.size is None:  # an empty file
                state.agree(0, r.headers.get("etag"), what)
                return bytearray(), str(r.url)
            if r.status_code == 200:
                raise CheckpointError(
                    f"{what}: the server sent the whole file (HTTP 200) for a range request; it must answer "
                    "ranges (206), or download the teacher and name the local copy"
                )
            if r.status_code != 206:
                raise CheckpointError(f"{what}: HTTP {r.status_code}, expected 206 for a range request")
            m = _CONTENT_RANGE.match(r.headers.get("content-range", ""))
            if m is None:
                raise CheckpointError(f"{what}: the answer has no valid Content-Range")
            got_first, got_last, size = (int(g) for g in m.groups())
            last = end - 1 if state.size is not None else min(end, size) - 1  # only a first request may be cut
            if (got_first, got_last) != (first, last):
                raise CheckpointError(f"{what}: the server sent bytes {got_first}-{got_last} instead")
            state.agree(size, r.headers.get("etag"), what)
            body = bytearray(last + 1 - first)  # filled in place: one copy of the bytes in memory
            view, at = memoryview(body), 0
            for chunk in r.iter_bytes():
                if at + len(chunk) > len(body):
                    raise CheckpointError(f"{what}: the server sent more bytes than the range holds")
                view[at : at + len(chunk)] = chunk
                at += len(chunk)
                self.count(fetched=len(chunk))
            if at != len(body):
                raise _Transient(f"the answer ended after {at} of {len(body)} bytes", None)
            return body, str(r.url)

    def _whole_once(self, url: str, headers: dict[str, str]) -> bytearray:
        client = self._client()
        with (
            self._client_errors(url),
            client.stream("GET", url, headers=headers, timeout=download_timeout(), follow_redirects=True) as r,
        ):
            self.count(requests=1)
            self._transient(r)
            self._refuse(r.status_code, url, url)
            if r.status_code != 200:
                raise CheckpointError(f"{url}: HTTP {r.status_code}")
            body = bytearray()
            for chunk in r.iter_bytes():
                self.count(fetched=len(chunk))
                body += chunk
                if len(body) > MAX_SMALL_FILE_BYTES:
                    raise too_large(url, len(body))
            return body

    @staticmethod
    def _transient(response: Any) -> None:
        if response.status_code in TRANSIENT_STATUS:
            raise _Transient(f"HTTP {response.status_code}", response.headers.get("retry-after"))

    def _refuse(self, status: int, what: str, url: str) -> None:
        if status in (401, 403):
            if self.hub_prefix and url.startswith(self.hub_prefix):
                fix = (
                    "for a gated or private Hub repo, accept its licence on its page and set HF_TOKEN "
                    "(or log in with `hf auth login`)"
                )
            else:
                fix = "the server wants credentials wsel does not send to it (a private or expired URL?)"
            raise Refused(f"{what}: HTTP {status}: not allowed; {fix}", status)
        if status in (404, 410):
            raise Refused(f"{what}: HTTP {status}: no such file", status)

    @staticmethod
    def _client_errors(what: str) -> Any:
        return _ClientErrors(what)

    def _retried(self, attempt_once: Callable[[], _T], what: str) -> _T:
        cause = ""
        for attempt in range(RETRIES + 1):
            if attempt:
                self.count(retries=1)
            wait = min(FIRST_WAIT * 2**attempt, MAX_WAIT)
            try:
                return attempt_once()
            except _Transient as e:
                cause, wait = e.cause, _retry_after(e.retry_after, wait)
            if attempt < RETRIES:
                time.sleep(wait)
        raise CheckpointError(f"{what}: {cause} (after {RETRIES} retries)")


class _Transient(Exception):
    """A failure worth retrying, with the server's Retry-After if it gave one."""

    def __init__(self, cause: str, retry_after: str | None) -> None:
        super().__init__(cause)
        self.cause, self.retry_after = cause, retry_after


class _ClientErrors:
    """Errors of the HTTP client: network failures are transient; anything else (too many redirects, a
    proxy error, an unsupported URL, offline mode) is one line naming the request."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        import httpx2
        from huggingface_hub import errors

        if exc is None or isinstance(exc, (CheckpointError, _Transient)):
            return
        if isinstance(exc, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)):
            raise _Transient(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, None) from None
        if isinstance(exc, errors.OfflineModeIsEnabled):
            raise CheckpointError(f"{self.what}: HF_HUB_OFFLINE is set; unset it to read from the network") from None
        if isinstance(exc, httpx2.HTTPError):
            raise CheckpointError(f"{self.what}: {type(exc).__name__}: {exc}") from None


def _retry_after(header: str | None, default: float) -> float:
    try:
        return min(max(float(header), 0.0), MAX_RETRY_AFTER) if header else default
    except ValueError:
        return default


def result(future: concurrent.futures.Future[_T]) -> _T:
    """The future's result; waits in short slices so that Ctrl-C stops the run at once."""
    while True:
        try:
            return future.result(timeout=0.2)
        except concurrent.futures.TimeoutError:
            continue
