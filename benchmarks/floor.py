"""The I/O floor: read the teacher byte ranges the plan needs, in large sequential reads, and write as many
bytes as the student's file holds, then fsync it, as wsel does. No selection work, no imports beyond the
standard library: what is left is the disk and the page cache.

Like wsel, it asks the kernel to fetch the ranges ahead of the reads (posix_fadvise WILLNEED, READAHEAD bytes
ahead, in pieces of ADVISE_PIECE): a floor that a smarter reader could beat would not be a floor.

    python benchmarks/floor.py READS.json OUT_FILE

READS.json: {"reads": [[file, offset, length], ...] in file order, "write_bytes": N}. Output is written
while reading, in proportion, so write-back overlaps the reads as it can for any streaming program.
"""

from __future__ import annotations

import json
import os
import sys

BUFFER = 16 << 20  # one read or write never exceeds this
READAHEAD = 64 << 20  # as wsel.checkpoint.reader.DEFAULT_READAHEAD_BYTES
ADVISE_PIECE = 1 << 20  # Linux caps one WILLNEED at the device's readahead window


def main(reads_json: str, output: str) -> None:
    with open(reads_json) as f:
        job = json.load(f)
    write_total = job["write_bytes"]
    reads = [  # in pieces of at most BUFFER bytes
        (file, piece, min(BUFFER, offset + length - piece))
        for file, offset, length in job["reads"]
        for piece in range(offset, offset + length, BUFFER)
    ]
    read_total = sum(n for _, _, n in reads) or 1
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    fds: dict[str, int] = {}
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    done_read = written = advised = 0
    pending = iter(reads)

    def fd_of(file: str) -> int:
        if file not in fds:
            fds[file] = os.open(file, os.O_RDONLY)
        return fds[file]

    try:
        for file, offset, length in reads:
            fd = fd_of(file)
            while advised < done_read + length + READAHEAD:  # keep READAHEAD bytes on their way
                ahead = next(pending, None)
                if ahead is None:
                    break
                for piece in range(ahead[1], ahead[1] + ahead[2], ADVISE_PIECE):
                    n = min(ADVISE_PIECE, ahead[1] + ahead[2] - piece)
                    os.posix_fadvise(fd_of(ahead[0]), piece, n, os.POSIX_FADV_WILLNEED)
                advised += ahead[2]
            if os.preadv(fd, [view[:length]], offset) != length:
                raise OSError(f"{file}: short read at {offset}")
            done_read += length
            due = write_total * done_read // read_total  # output owed so far
            while written < due:
                written += os.write(out, view[: min(BUFFER, due - written)])
        while written < write_total:
            written += os.write(out, view[: min(BUFFER, write_total - written)])
        os.fsync(out)
    finally:
        os.close(out)
        for fd in fds.values():
            os.close(fd)


if __name__ == "__main__":
    main(*sys.argv[1:])
