"""Run one program as a child process and measure it from the outside (Linux /proc).

- wall time: from spawning the child to its exit (interpreter start-up and imports included);
- memory: /proc/PID/status sampled every `interval` seconds: VmRSS (all resident pages: anonymous, file-backed
  (mapped files and libraries) and shared), its parts RssAnon, RssFile, RssShmem, and VmHWM, the kernel's
  high-water mark of VmRSS, which also catches peaks between samples. (wait4's ru_maxrss is not used: Linux
  folds the spawning parent's high-water mark into it at exec, so it would report the harness's size.)
- I/O: /proc/PID/io read once more after the child exits but before it is reaped (a zombie keeps it):
  read_bytes = bytes the child made the kernel fetch from disk (cold reads; mmap faults included),
  rchar = bytes passed by read-like syscalls (page cache hits too, mmap not at all),
  write_bytes = bytes it dirtied for disk, wchar = bytes passed to write-like syscalls;
- sync: after the child exits, os.sync() is timed, so write-back a program left behind (it did not
  fsync) is measured too, and never spills into the next measurement.
"""

from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STATUS_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")
IO_KEYS = ("rchar", "wchar", "read_bytes", "write_bytes")


def _proc_fields(pid: int, name: str, keys: Sequence[str], unit: int) -> dict[str, int]:
    """`key: value` lines of /proc/PID/NAME for `keys`, values times `unit`; empty once the process is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in keys:
                    out[key] = int(rest.split()[0]) * unit
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        pass
    return out


def _status(pid: int) -> dict[str, int]:
    return _proc_fields(pid, "status", STATUS_KEYS, 1024)  # kB


def _io(pid: int) -> dict[str, int]:
    return _proc_fields(pid, "io", IO_KEYS, 1)


def run(argv: Sequence[str], log: Path, interval: float = 0.01, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `argv` to completion and return its measurements; stdout and stderr go to `log`."""
    peaks = dict.fromkeys(STATUS_KEYS, 0)
    samples = 0
    exited = threading.Event()
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env)
        exit_time: list[float] = []

        def wait_exit() -> None:  # blocks until the child exits, without reaping it
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            exit_time.append(time.perf_counter())
            exited.set()

        waiter = threading.Thread(target=wait_exit, daemon=True)
        waiter.start()
        while not exited.wait(interval):
            for k, v in _status(proc.pid).items():  # VmHWM only grows: its last sample is the peak so far
                peaks[k] = max(peaks[k], v)
            samples += 1
        waiter.join()
        io = _io(proc.pid)  # the zombie still has its counters
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    synced = time.perf_counter()
    os.sync()
    sync_seconds = time.perf_counter() - synced
    wall = exit_time[0] - started
    return {
        "returncode": proc.returncode,
        "wall": wall,
        "sync": sync_seconds,
        "wall_synced": wall + sync_seconds,
        "peak_rss": max(peaks["VmHWM"], peaks["VmRSS"]),
        "peak_rss_sampled": peaks["VmRSS"],
        "peak_anon": peaks["RssAnon"],
        "peak_file": peaks["RssFile"],
        "peak_shmem": peaks["RssShmem"],
        "samples": samples,
        "cpu_user": usage.ru_utime,
        "cpu_sys": usage.ru_stime,
        **{k: io.get(k, -1) for k in IO_KEYS},
    }


def evict(files: Sequence[Path]) -> None:
    """Drop the files' pages from the page cache (after a sync, so all of them are clean)."""
    os.sync()
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def prewarm(files: Sequence[Path], buffer: int = 16 << 20) -> None:
    """Read the files once so their pages are in the page cache."""
    buf = bytearray(buffer)
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def cached_fraction(files: Sequence[Path]) -> float | None:
    """Share of the files' pages in the page cache (mincore on a private mapping), or None if unavailable."""
    import ctypes
    import mmap

    import numpy as np

    libc = ctypes.CDLL(None, use_errno=True)
    total = resident = 0
    for path in files:
        size = path.stat().st_size
        if not size:
            continue
        pages = -(-size // mmap.PAGESIZE)
        vec = np.zeros(pages, dtype=np.uint8)
        with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
            buf = (ctypes.c_char * size).from_buffer(m)
            rc = libc.mincore(
                ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(size), vec.ctypes.data_as(ctypes.c_void_p)
            )
            del buf
        if rc != 0:
            return None
        total += pages
        resident += int(np.count_nonzero(vec & 1))
    return resident / total if total else None


def machine() -> dict[str, Any]:
    """Cores, memory, disk and software versions, for the results."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
        with open("/proc/meminfo") as f:
            info["memory_bytes"] = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    return info


def disk(path: Path) -> dict[str, Any]:
    """The block device under `path`: name, rotational, read-ahead, and a note that it may be virtual."""
    st = os.stat(path)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    out: dict[str, Any] = {"device": f"{major}:{minor}"}
    sys_dev = Path(f"/sys/dev/block/{major}:{minor}")
    try:
        real = sys_dev.resolve()
        out["name"] = real.name
        queue = real / "queue" if (real / "queue").exists() else real.parent / "queue"
        out["rotational"] = (queue / "rotational").read_text().strip() == "1"
        out["read_ahead_kb"] = int((queue / "read_ahead_kb").read_text())
        model = real / "device" / "model"
        if not model.exists():
            model = real.parent / "device" / "model"
        if model.exists():
            out["model"] = model.read_text().strip()
    except OSError:
        pass
    vfs = os.statvfs(path)
    out["free_bytes"] = vfs.f_bavail * vfs.f_frsize
    return out
