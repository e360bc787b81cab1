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

__all__ = ["DEFAULT_MEMORY", "available_memory", "chunk_budget", "read_bound", "fmt_bytes"]

DEFAULT_MEMORY = 256 << 20  #: default working-memory budget of one chunk (bytes)
_MAX_DEFAULT_READ = 4 << 30


def available_memory() -> int | None:
    """Bytes of memory available to new work (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def chunk_budget(memory_limit: int | None) -> int:
    """The bytes one chunk's working set may take: ``memory_limit``, or the default."""
    if memory_limit is not None:
        return int(memory_limit)
    budget = DEFAULT_MEMORY
    available = available_memory()
    if available is not None and available // 4 < budget:
        budget = max(available // 4, 16 << 20)
    return budget


def read_bound(memory_limit: int | None) -> int:
    """The most bytes one indivisible read may decompress to (see the module notes)."""
    if memory_limit is not None:
        return int(memory_limit)
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
