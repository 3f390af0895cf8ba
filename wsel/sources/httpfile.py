"""Files on an HTTP server, read by range requests: only the bytes a plan needs cross the network.

A file's first request (FIRST_READ_BYTES) teaches its size and ETag and brings its header; those bytes are
kept and never fetched again. Reads announced ahead (`prefetch`, from the reader's read schedule) go out
on worker threads, several in flight, as pieces queued in the order announced (ranges closer than
MERGE_GAP_BYTES merged, requests split at PIECE_BYTES); reads then take the pieces in that order, each
piece dropped once a read has moved past it, so memory holds what is announced and not yet read (the
reader's readahead window). A read nobody announced is fetched when it is made. A redirect (the Hub's CDN) is followed
once; later requests go straight to where it led, and back through the original URL if that place stops
answering (a signed URL that expired).
"""

from __future__ import annotations

import concurrent.futures
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from wsel.errors import CheckpointError
from wsel.sources.base import Folder, Handle, Source, Traffic
from wsel.sources.session import FileState, HttpSession, Refused, result

PIECE_BYTES = 8 << 20  # the largest request: big enough to amortize a round trip, small enough to overlap
# Announced reads closer than this are fetched by one request, the gap read too: a gap about the size of a
# request's own headers costs less to fetch than a request of its own.
MERGE_GAP_BYTES = 1 << 10
FIRST_READ_BYTES = 64 << 10  # the first request of a file: its header, usually whole (a second one if not)


@dataclass(frozen=True)
class HttpFile(Source):
    # A request costs a round trip (tens of ms), shared by the connections in flight: at 100 MB/s, 20 ms and 8
    # connections that is the time of 250 KB. Dropped rows smaller than this are fetched and discarded.
    min_skip_bytes: ClassVar[int] = 256 << 10

    url: str
    shown_as: str  # how messages name it: the URL, or `hf://org/name/file` for the Hub
    session: HttpSession = field(compare=False, repr=False)
    state: FileState = field(default_factory=FileState, compare=False, repr=False)

    @property
    def location(self) -> str:
        return self.shown_as

    @property
    def name(self) -> str:
        return self.shown_as.split("?")[0].rstrip("/").rsplit("/", 1)[-1]

    def open(self) -> HttpHandle:
        return HttpHandle(self)

    def fetch(self, first: int, end: int) -> bytearray:
        """Bytes [first, end), through the redirect's target when one is known."""
        state = self.state
        url = state.direct_url or self.url
        try:
            data, answered = self.session.get_range(url, first, end, state, self.shown_as)
        except Refused:
            if url == self.url:
                raise
            state.direct_url = None  # the redirect's target expired: ask the original URL again
            data, answered = self.session.get_range(self.url, first, end, state, self.shown_as)
        if answered != self.url:
            state.direct_url = answered
        return data


@dataclass
class _Piece:
    first: int
    end: int  # exclusive
    data: concurrent.futures.Future[bytearray]


class HttpHandle(Handle):
    first_read_bytes = FIRST_READ_BYTES

    def __init__(self, file: HttpFile) -> None:
        self.file, self.state = file, file.state
        if self.state.size is None:  # the first request teaches the size; its bytes (the header) are kept
            self.state.head = bytes(file.fetch(0, FIRST_READ_BYTES))
        assert self.state.size is not None  # set by the first answer
        self.size = self.state.size
        self._pieces: deque[_Piece] = deque()  # requested ahead, in the order announced (the order of reads)
        self._span: tuple[int, int] | None = None  # announced reads not yet requested (merged)

    def prefetch(self, offset: int, length: int) -> None:
        first, end = max(offset, len(self.state.head)), offset + length  # the first request's bytes are here
        if first >= end:
            return
        if self._span is not None and self._span[1] <= first <= self._span[1] + MERGE_GAP_BYTES:
            self._span = (self._span[0], end)
        else:
            self._request_span()
            self._span = (first, end)
        while self._span[1] - self._span[0] > PIECE_BYTES:  # full pieces go out at once
            start = self._span[0]
            self._request(start, start + PIECE_BYTES)
            self._span = (start + PIECE_BYTES, self._span[1])

    def _request_span(self) -> None:
        if self._span is not None:
            self._request(*self._span)
            self._span = None

    def _request(self, first: int, end: int) -> None:
        file = self.file
        self._pieces.append(_Piece(first, end, file.session.submit(lambda: file.fetch(first, end))))

    def read_into(self, ranges: Sequence[tuple[int, int]], out: memoryview) -> None:
        self._request_span()  # what was announced goes out before we wait for any of it
        at = 0
        for offset, length in ranges:
            self._copy(offset, offset + length, out[at : at + length])
            at += length

    def _copy(self, first: int, end: int, out: memoryview) -> None:
        """Bytes [first, end) into `out`: from the first request's bytes, from pieces fetched ahead (waiting for
        them), and for anything not announced, from a request made now."""
        head = self.state.head
        position = first
        while position < end:
            data: memoryview
            if position < len(head):
                data = memoryview(head)[position:]
            else:
                piece = self._front(position)
                if piece is None:  # not announced: fetch it now (up to the next piece's start)
                    stop = min(end, self._pieces[0].first) if self._pieces else end
                    data = memoryview(self.file.fetch(position, stop))
                else:
                    data = memoryview(result(piece.data))[position - piece.first :]  # a view: no copy
                    if position + len(data) <= end:  # read to its end: done with (a repeat has its own piece)
                        self._pieces.popleft()
            n = min(end - position, len(data))
            if n <= 0:  # cannot happen with checked answers; never loop on it
                raise CheckpointError(f"{self.file.location}: no bytes at {position} while reading")
            out[position - first : position - first + n] = data[:n]
            position += n

    def _front(self, position: int) -> _Piece | None:
        """The next piece in announced order if it holds `position`; pieces the reads have moved past (or
        jumped back from, to read a range again) are done with and dropped. None when the front piece
        starts later (or there is none): `position` was not announced."""
        while self._pieces:
            piece = self._pieces[0]
            if piece.first <= position < piece.end:
                return piece
            if piece.first > position and not any(p.first <= position < p.end for p in self._pieces):
                return None
            self._pieces.popleft().data.cancel()
        return None

    def close(self) -> None:
        while self._pieces:
            self._pieces.popleft().data.cancel()


class UrlFolder(Folder):
    """The folder of a URL (an index's shards and config.json are found relative to it). It cannot be
    listed: a file is looked for with a HEAD request, once."""

    def __init__(self, base: str, session: HttpSession, named: dict[str, str] | None = None) -> None:
        self.base = base.rstrip("/") + "/"
        self.session = session
        self._urls = dict(named or {})  # name → URL: the file the user named keeps its query (a signed URL)
        self._files: dict[str, HttpFile] = {}
        self._exists: dict[str, bool] = {}

    @property
    def location(self) -> str:
        return self.base

    def _url(self, name: str) -> str:
        return self._urls.get(name, self.base + name)

    def names(self) -> None:
        return None

    def has(self, name: str) -> bool:
        if name not in self._exists:
            self._exists[name] = name in self._urls or self.session.exists(self._url(name))
        return self._exists[name]

    def source(self, name: str) -> HttpFile:
        if name not in self._files:
            self._files[name] = HttpFile(self._url(name), self._url(name).split("?")[0], self.session)
        return self._files[name]

    def read_small(self, name: str) -> bytes:
        return self.session.get_whole(self._url(name))

    def traffic(self) -> Traffic:
        return self.session.traffic

    def describe(self) -> dict[str, str]:
        return {"url": self.base}
