"""The memory budget: how much one run may hold, and what a single read may decompress to.

``memory_limit`` (``--memory-limit``) is a bound on the working memory of an analysis. Without
one, the budget of one chunk is :data:`DEFAULT_MEMORY` (fixed, so that results never depend on
the machine), shrunk on a machine with little available memory.

Readers use :func:`read_bound` for what one indivisible read (an HDF5 chunk, a compressed NPZ
member) may decompress to: the budget when the user set one, else a generous default (the
larger of :data:`DEFAULT_MEMORY` and half the available memory, at most 4 GiB), so that a
hostile file declaring a 1 GiB gzip chunk cannot make ncinspect allocate it.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MEMORY",
    "ProcessLimit",
    "available_memory",
    "chunk_budget",
    "chunk_bound",
    "current_rss",
    "held_by_process",
    "read_bound",
    "reserve_read",
    "fmt_bytes",
]

DEFAULT_MEMORY = 256 << 20  #: default working-memory budget of one chunk (bytes)
_MAX_DEFAULT_READ = 4 << 30


_AVAILABLE: list = [None, -1.0]  # the last reading and its time (time.monotonic)


def available_memory() -> int | None:
    """Bytes of memory available to new work (Linux ``MemAvailable``), or None if unknown.

    Read at most once a second (a file of 10,000 snapshots plans 10,000 times)."""
    import time

    now = time.monotonic()
    if now - _AVAILABLE[1] > 1.0:
        _AVAILABLE[:] = [_read_available(), now]
    return _AVAILABLE[0]


def _read_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class ProcessLimit(int):
    """A memory limit on the whole process (the CLI's ``--memory-limit``): what the process
    already holds when a run is planned (:func:`current_rss`: the interpreter, the imported
    libraries, the labels) is taken out of it first, and so is what a single read of the
    input will take for a moment beyond the buffers a plan counts (:meth:`reserve`: libhdf5
    inflating a whole compressed chunk). A plain int ``memory_limit`` (the library's)
    bounds what the analysis adds to the process."""

    #: bytes one read of the input takes beyond its buffers (the largest registered)
    transient: int = 0

    def reserve(self, nbytes: int) -> None:
        """Register a read that takes ``nbytes`` for a moment (e.g. a compressed HDF5 chunk
        and its inflated copy: libhdf5 holds both while it reads any row of the chunk):
        plans made under this limit leave room for the largest."""
        self.transient = max(self.transient, int(nbytes))


def current_rss() -> int:
    """Resident bytes of this process now (``/proc/self/statm``; psutil elsewhere; 0 when
    neither is available)."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - psutil missing or the platform refuses
        return 0


def held_by_process(memory_limit: int | None) -> int:
    """Bytes of ``memory_limit`` already spent: the resident size of the process for a
    :class:`ProcessLimit`, 0 for a plain limit (or none)."""
    if isinstance(memory_limit, ProcessLimit):
        return current_rss() + memory_limit.transient
    return 0


def reserve_read(memory_limit: int | None, nbytes: int) -> None:
    """:meth:`ProcessLimit.reserve` of ``memory_limit`` when it is one (else nothing)."""
    if isinstance(memory_limit, ProcessLimit):
        memory_limit.reserve(nbytes)


def chunk_budget(memory_limit: int | None) -> int:
    """The bytes one chunk's working set may take: ``memory_limit``, or the default."""
    if memory_limit is not None:
        return max(int(memory_limit) - held_by_process(memory_limit), 0)
    budget = DEFAULT_MEMORY
    available = available_memory()
    if available is not None and available // 4 < budget:
        budget = max(available // 4, 16 << 20)
    return budget


def chunk_bound(memory_limit: int | None) -> int:
    """The most bytes one HDF5 chunk may decompress to: what is left of ``memory_limit``, or
    without one the default budget of a chunk (:func:`chunk_budget`, 256 MiB). HDF5
    decompresses a whole chunk for any read of it, so one huge gzip chunk in a small file
    (1 GiB of zeros compress to 1 MB) is refused from its declared size before any read,
    instead of being inflated, once per row range read, for minutes."""
    return chunk_budget(memory_limit)


def read_bound(memory_limit: int | None) -> int:
    """The most bytes one indivisible read may decompress to (see the module notes)."""
    if memory_limit is not None:
        return max(int(memory_limit) - held_by_process(memory_limit), 0)
    available = available_memory()
    if available is None:
        return _MAX_DEFAULT_READ
    return max(DEFAULT_MEMORY, min(available // 2, _MAX_DEFAULT_READ))


def fmt_bytes(n: float) -> str:
    """``123456789`` -> ``"118 MiB"`` (binary units, at most three significant digits)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"
