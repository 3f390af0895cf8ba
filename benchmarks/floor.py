"""The I/O floor: read the teacher byte ranges the plan needs, in large sequential reads, and write as many
bytes as the student's file holds, then fsync it, as wsel does. No selection work, no imports beyond the
standard library: what is left is the disk and the page cache.

    python benchmarks/floor.py READS.json OUT_FILE

READS.json: {"reads": [[file, offset, length], ...] in file order, "write_bytes": N}. Output is written
while reading, in proportion, so write-back overlaps the reads as it can for any streaming program.
"""

from __future__ import annotations

import json
import os
import sys

BUFFER = 16 << 20  # one read or write never exceeds this


def main(reads_json: str, output: str) -> None:
    with open(reads_json) as f:
        job = json.load(f)
    reads, write_total = job["reads"], job["write_bytes"]
    read_total = sum(n for _, _, n in reads) or 1
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    fds: dict[str, int] = {}
    out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    done_read = written = 0
    try:
        for file, offset, length in reads:
            fd = fds.get(file)
            if fd is None:
                fd = fds[file] = os.open(file, os.O_RDONLY)
            end = offset + length
            while offset < end:
                n = os.preadv(fd, [view[: min(BUFFER, end - offset)]], offset)
                if n <= 0:
                    raise OSError(f"{file}: short read at {offset}")
                offset += n
                done_read += n
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
