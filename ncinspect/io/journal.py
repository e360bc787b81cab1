"""Commits of an HDF5 file that a killed writer cannot tear.

libhdf5 updates a file in place and keeps no journal outside SWMR mode (which cannot create
groups, so a writer of snapshots cannot use it): a writer killed while libhdf5 writes out its
metadata can leave a group's link storage half old, half new, and then even the snapshots
finished long before are lost (libhdf5 cannot list the group). :class:`JournalFile` is the
file object the :class:`~ncinspect.io.writer.DumpWriter` hands to libhdf5 (h5py's ``fileobj``
driver) so that the file on disk only ever moves from one commit to the next:

* a write past the end of the last commit goes to the file at once (nothing committed refers
  to those bytes, and readers read no further than the committed end libhdf5 recorded);
* a write into the committed bytes is held in memory (and read back from there);
* :meth:`JournalFile.commit` appends the held writes after the file's new end as a *redo
  journal* ending in a trailer with their CRC-32, then writes them in place, then truncates
  the file to its new end, which removes the journal.

A kill before the trailer is whole leaves the last commit as it was (the bytes appended lie
past its end); a kill after it leaves a journal whose replay gives the new commit, whole.
Readers replay it in memory (:func:`replayed`: the file is not changed), and the next
:class:`JournalFile` of the file (the next writer) applies it first. The protection is against
the writing process dying (``kill -9``, an out-of-memory kill, a crash); the journal is not
synced to the disk, so a power cut or an operating-system crash may still lose what the
system had not written out.

The layout (little-endian): the journal's records, each ``offset u64, length u64`` followed by
``length`` bytes, or, with the top bit of ``length`` set, standing for that many zero bytes
(a stretch the writer truncated away and grew again); then the trailer, :data:`MAGIC`, the
journal's start, the file's new end and the records' size (three u64) and their CRC-32 (u32,
which finds a journal torn or damaged; a hostile file could forge any checksum). The
trailer is the file's last :data:`TRAILER_SIZE` bytes. A zero record comes first; the others
follow in order of offset, without overlap, all below the new end, which is at most the
journal's start. A trailer that breaks any of this is not replayed (a note says so).
"""

from __future__ import annotations

import bisect
import functools
import os
import signal
import stat
import struct
import threading
import weakref
import zlib

__all__ = [
    "JournalFile",
    "Replayed",
    "replayed",
    "interrupts_deferred",
    "written_here",
    "MAGIC",
    "TRAILER_SIZE",
]

MAGIC = b"\x89NCINSPECT-JNL1\n"  # 16 bytes
_TRAILER = struct.Struct("<16sQQQI")
TRAILER_SIZE = _TRAILER.size  # 44
_RECORD = struct.Struct("<QQ")
_ZERO = 1 << 63  # a record of zeros: its length's top bit
_MAX_RECORDS = 100_000  # a trailer claiming more is not ours (JournalFile keeps under it)
_BLOCK = 1 << 20
_KEEP = 64 << 20  # a reader keeps a journal of up to this many bytes in memory
_PREADV = hasattr(os, "preadv")


def _pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        done = os.pwrite(fd, view, offset)
        view = view[done:]
        offset += done


def _pwrite_parts(fd: int, parts: list, offset: int) -> None:
    """``parts`` written one after the other from ``offset``, the last byte last (one
    ``pwritev`` where there is one: a kill leaves a prefix of them)."""
    if not hasattr(os, "pwritev"):
        _pwrite_all(fd, b"".join(parts), offset)
        return
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        done = os.pwritev(fd, views[:1024], offset)  # (IOV_MAX)
        offset += done
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if views and done:
            views[0] = views[0][done:]


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset``; returns how many bytes the file had (the rest untouched)."""
    got = 0
    while got < len(view):
        if _PREADV:  # straight into the buffer
            n = os.preadv(fd, [view[got:]], offset + got)
        else:
            data = os.pread(fd, len(view) - got, offset + got)
            n = len(data)
            view[got : got + n] = data
        if n <= 0:
            break
        got += n
    return got


def _write_zeros(fd: int, offset: int, length: int) -> None:
    block = bytes(min(length, _BLOCK))
    while length > 0:
        n = min(length, len(block))
        _pwrite_all(fd, block[:n], offset)
        offset += n
        length -= n


class _Journal:
    """A journal found at the end of a file: the new end and the records, read lazily."""

    __slots__ = ("start", "end", "zero", "offsets", "lengths", "positions", "data")

    def __init__(self, start: int, end: int):
        self.start = start
        self.end = end
        self.zero: tuple[int, int] | None = None  # (offset, length) of the zero record
        self.offsets: list[int] = []  # data records, in order of offset
        self.lengths: list[int] = []
        self.positions: list[int] = []  # where each record's bytes lie in the file
        self.data: list[bytes] | None = None  # the records' bytes, when kept in memory


def _read_journal(fd: int, size: int, keep: bool = False) -> _Journal | None | str:
    """The valid journal at the end of the file open as ``fd`` (``size`` bytes long); None
    when its last bytes are no trailer; a reason when they are one that cannot be replayed.
    ``keep``: the records' bytes kept in memory when they are at most :data:`_KEEP` bytes (a
    reader's view then no longer depends on the journal's place in the file, which a live
    writer reuses once it has applied the journal)."""
    if size < TRAILER_SIZE:
        return None
    raw = os.pread(fd, TRAILER_SIZE, size - TRAILER_SIZE)
    if len(raw) != TRAILER_SIZE or not raw.startswith(MAGIC):
        return None
    _, start, end, length, crc = _TRAILER.unpack(raw)
    if start + length + TRAILER_SIZE != size or end > start:
        return "its journal's trailer does not match the file's length"
    journal = _Journal(start, end)
    if keep and length <= _KEEP:
        journal.data = []
    check = 0
    pos, stop = start, start + length
    while pos < stop:
        head = os.pread(fd, _RECORD.size, pos)
        if len(head) != _RECORD.size:
            return "its journal ends inside a record"
        check = zlib.crc32(head, check)
        offset, n = _RECORD.unpack(head)
        pos += _RECORD.size
        zero = bool(n & _ZERO)
        n &= ~_ZERO
        if offset + n > end:
            return "its journal writes past the file's end"
        if zero:
            if journal.zero is not None or journal.offsets:
                return "its journal's records are out of order"
            journal.zero = (offset, n)
            continue
        if pos + n > stop:
            return "its journal ends inside a record"
        if journal.offsets and offset < journal.offsets[-1] + journal.lengths[-1]:
            return "its journal's records are out of order"
        if len(journal.offsets) >= _MAX_RECORDS:
            return "its journal holds too many records"
        journal.offsets.append(offset)
        journal.lengths.append(n)
        journal.positions.append(pos)
        left, blocks = n, []
        while left:  # hashed in blocks: a record may be large
            block = os.pread(fd, min(left, _BLOCK), pos + n - left)
            if not block:
                return "its journal ends inside a record"
            check = zlib.crc32(block, check)
            left -= len(block)
            if journal.data is not None:
                blocks.append(block)
        if journal.data is not None:
            journal.data.append(b"".join(blocks))
        pos += n
    if check != crc:
        return "its journal's checksum does not match"
    return journal


def _apply(fd: int, journal: _Journal) -> None:
    """Write ``journal`` into the file in place and cut the file at its new end."""
    if journal.zero is not None:
        _write_zeros(fd, *journal.zero)
    for offset, n, pos in zip(journal.offsets, journal.lengths, journal.positions, strict=True):
        done = 0
        while done < n:
            block = os.pread(fd, min(n - done, _BLOCK), pos + done)
            _pwrite_all(fd, block, offset + done)
            done += len(block)
    os.ftruncate(fd, journal.end)


class _Positioned:
    """What h5py's ``fileobj`` driver asks of a file object besides its reads and writes: a
    position, moved by ``seek`` (from the end: the ``size`` the subclass gives), and ``read``
    made of ``readinto``."""

    _pos: int
    size: int

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = self.size + pos if whence == 2 else pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = max(0, self.size - self._pos)
        buf = bytearray(n)
        self.readinto(buf)
        return bytes(buf)


class Replayed(_Positioned):
    """A read-only file object (h5py's ``fileobj`` driver) showing a file with the journal at
    its end applied, in memory: what the writer's last commit holds."""

    def __init__(self, fd: int, path: str, journal: _Journal):
        self._fd = fd
        self.name = path
        self._journal = journal
        self._pos = 0

    def __repr__(self) -> str:
        return f"Replayed({self.name!r})"

    def locked(self) -> bool:
        """True when a writer holds the file's lock (it is still at work on it)."""
        taken = _flock(self._fd, shared=True)
        if taken:
            _flock(self._fd, unlock=True)
        return taken is False

    @property
    def size(self) -> int:
        return self._journal.end

    # h5py's fileobj protocol ---------------------------------------------------------------
    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        n, pos, j = len(view), self._pos, self._journal
        inside = max(0, min(n, j.end - pos))
        got = _pread_into(self._fd, view[:inside], pos) if inside else 0
        view[got:] = bytes(n - got)
        if j.zero is not None:
            lo, hi = max(pos, j.zero[0]), min(pos + n, j.zero[0] + j.zero[1])
            if lo < hi:
                view[lo - pos : hi - pos] = bytes(hi - lo)
        i = max(0, bisect.bisect_right(j.offsets, pos) - 1)
        while i < len(j.offsets) and j.offsets[i] < pos + n:
            lo = max(pos, j.offsets[i])
            hi = min(pos + n, j.offsets[i] + j.lengths[i])
            if lo < hi and j.data is not None:
                view[lo - pos : hi - pos] = j.data[i][lo - j.offsets[i] : hi - j.offsets[i]]
            elif lo < hi:
                _pread_into(self._fd, view[lo - pos : hi - pos], j.positions[i] + lo - j.offsets[i])
            i += 1
        self._pos = pos + n
        return n

    def write(self, data) -> int:
        raise OSError(f"{self.name}: read-only (a journal replayed in memory)")

    def truncate(self, size: int | None = None) -> int:
        raise OSError(f"{self.name}: read-only (a journal replayed in memory)")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit os may be gone already
            pass


def replayed(path: str) -> Replayed | str | None:
    """The file at ``path`` as its writer's last commit holds it, when a writer was killed
    inside a commit and left a journal at its end (:class:`Replayed`, read-only, the file
    unchanged); None when there is no journal (the common case: one read of the file's last
    bytes) or ``path`` is no regular file; a reason when the trailer there cannot be replayed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        found = _read_journal(fd, st.st_size, keep=True) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        found = None
    if isinstance(found, _Journal):
        return Replayed(fd, path, found)
    os.close(fd)
    return found


_deferring = 0  # how deep the main thread is in interrupts_deferred calls
#: the signals whose Python handlers are held back: every standard one a handler can be set
#: for (a program's real-time signals are left alone)
_SIGNALS = tuple(
    sig
    for sig in getattr(signal, "valid_signals", lambda: ())()
    if sig < 32 and sig not in (getattr(signal, "SIGKILL", -1), getattr(signal, "SIGSTOP", -1))
)


def interrupts_deferred(method):
    """Decorate a writer's method that calls libhdf5 (which calls a :class:`JournalFile`
    back): a signal whose Python handler could raise (Ctrl-C's ``KeyboardInterrupt``, a
    framework's ``SIGCHLD`` or ``SIGALRM`` handler) and that arrives meanwhile is handled when
    the outermost such method returns, not inside libhdf5's call: Python runs a handler at
    the next Python function it enters, a callback of libhdf5's, which libhdf5 does not
    survive raising (the class's docstring). Only the main thread runs Python's signal
    handlers; other threads call the method as it is."""

    @functools.wraps(method)
    def deferred(*args, **kwargs):
        global _deferring
        if _deferring or threading.current_thread() is not threading.main_thread():
            return method(*args, **kwargs)
        caught: list[int] = []
        held: dict[int, object] = {}  # each signal swapped so far, and its real handler
        _deferring = 1
        try:
            for sig in _SIGNALS:
                handler = signal.getsignal(sig)
                if callable(handler):
                    held[sig] = handler  # (first: restored even if the swap is cut short)
                    signal.signal(sig, lambda signum, frame: caught.append(signum))
            return method(*args, **kwargs)
        finally:
            _deferring = 0
            _restore(held, caught)

    return deferred


def _restore(held: dict, caught: list[int]) -> None:
    """Put every held handler back, even if a handler already back raises meanwhile (that
    exception is raised once all are back), then send each signal that came meanwhile again,
    once: Python runs its real handler next, as it would have."""
    raised = None
    left = list(held.items())
    while left:
        try:
            signal.signal(*left[-1])
            left.pop()
        except BaseException as exc:  # a restored handler ran and raised: go on restoring
            raised = raised or exc
    again = list(dict.fromkeys(caught))
    while again:
        try:
            signal.raise_signal(again[-1])
            again.pop()
        except BaseException as exc:  # its handler ran at once and raised: send the rest
            again.pop()
            raised = raised or exc
    if raised is not None:
        raise raised


#: (device, inode) -> the JournalFile of each file this process writes (while it lives)
_WRITING: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def written_here(path: str) -> bool:
    """True when this process has ``path`` open for writing through a :class:`JournalFile`
    (a reader of it must take it as being written: libhdf5 no longer shares one handle
    between the writer and the reader, which told it so before)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError, TypeError):
        return False
    journal = _WRITING.get((st.st_dev, st.st_ino))
    return journal is not None and journal._fd >= 0 and journal._pid == os.getpid()


def _cut(data: bytes | int, size: int) -> bytes | int:
    return min(data, size) if isinstance(data, int) else data[:size]


def _flock(fd: int, *, shared: bool = False, unlock: bool = False) -> bool | None:
    """libhdf5's lock on the file (``flock``, without waiting): True when taken (or let go),
    False when another holder has it, None when locks are off (``HDF5_USE_FILE_LOCKING=FALSE``,
    as for libhdf5), missing (Windows) or unsupported by the file system (libhdf5 goes on
    without one there too)."""
    if os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() in ("FALSE", "0"):
        return None
    try:
        import fcntl
    except ImportError:
        return None
    how = fcntl.LOCK_UN if unlock else (fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _lock(fd: int) -> None:
    if _flock(fd) is False:
        raise OSError(
            "unable to lock file: another program has it open (a writer, or a reader that locks it)"
        )


class JournalFile(_Positioned):
    """The file object a writer hands to libhdf5 (h5py's ``fileobj`` driver): writes into the
    committed bytes are held until :meth:`commit`, which makes them durable as a redo journal
    before it writes them in place (the module's docstring). Opening it applies a journal a
    killed writer left. It owns ``fd`` (open read-write) and closes it in :meth:`close` (or
    when it is collected: a writer dropped without a close releases the file and its lock).

    libhdf5 calls these methods in the middle of its own work and does not survive an
    exception raised there (h5py reports it late, and libhdf5's caches are left half
    updated: a crash follows). So no exception leaves them: when one arises inside (an
    interrupt's handler, a full disk, a process forked from the writer's), the file object
    *fails*. From then on nothing reaches the file (what libhdf5 writes is kept in memory, so
    that its reads stay consistent until control is back in Python), and :meth:`commit`
    raises instead: the file stays as its last commit left it (with the journal of a commit
    cut short, which readers replay)."""

    @classmethod
    def open(cls, path: str, flags: int) -> JournalFile:
        """Open ``path`` read-write (``os.open`` ``flags`` added: ``O_CREAT``, ``O_EXCL``) and
        take the lock libhdf5 takes for a writer (``flock``, exclusive: no other writer, and
        readers that lock see the file is being written); ``HDF5_USE_FILE_LOCKING=FALSE``
        switches it off as it does libhdf5's."""
        fd = os.open(path, flags | os.O_RDWR, 0o666)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{path} is not a regular file")
            _lock(fd)
            return cls(fd, path)
        except BaseException:
            os.close(fd)
            raise

    def __init__(self, fd: int, path: str):
        self._fd = -1  # (the descriptor is this object's once it is made)
        self.name = path
        self._pos = 0
        self._pid = os.getpid()
        self._failed: BaseException | None = None  # what stopped the writes to the file
        self._reported = False  # the failure was raised once (by commit)
        self._lost: list[tuple[int, bytes | int]] = []  # writes since the failure, in order
        found = _read_journal(fd, os.fstat(fd).st_size)
        if isinstance(found, str):
            raise OSError(
                f"the journal at its end cannot be replayed ({found}): the file may be torn; "
                "copy it aside and write a new file"
            )
        if found is not None:
            _apply(fd, found)
        self._size = self._committed = self._floor = os.fstat(fd).st_size
        self._fd = fd
        _WRITING[self.identity()] = self
        self._starts: list[int] = []  # held writes: disjoint, by offset
        self._held: list[bytearray] = []

    def __repr__(self) -> str:
        return f"JournalFile({self.name!r})"

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit os may be gone already
            pass

    @property
    def size(self) -> int:
        """The file's length as libhdf5 sees it (the commit to come)."""
        return self._size

    def identity(self) -> tuple[int, int]:
        """The file's (device, inode)."""
        st = os.fstat(self._fd)
        return st.st_dev, st.st_ino

    @property
    def failed(self) -> BaseException | None:
        """What stopped the writes to the file, or None."""
        return self._failed

    def _fail(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc

    # h5py's fileobj protocol ---------------------------------------------------------------
    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        n, pos = len(view), self._pos
        try:
            self._read(view, pos)
        except BaseException as exc:  # (see the class's docstring)
            self._fail(exc)
            try:  # once more: the interruption has passed
                self._read(view, pos)
            except BaseException:
                view[:] = bytes(n)
        for at, data in self._lost:  # (an int: that many zeros)
            length = data if isinstance(data, int) else len(data)
            lo, hi = max(pos, at), min(pos + n, at + length)
            if lo < hi:
                view[lo - pos : hi - pos] = (
                    bytes(hi - lo) if isinstance(data, int) else data[lo - at : hi - at]
                )
        self._pos = pos + n
        return n

    def _read(self, view: memoryview, pos: int) -> None:
        n = len(view)
        # the committed bytes below the lowest truncation since the commit, and the bytes
        # written past the commit's end, come from the file; a stretch truncated away and
        # grown again, and anything past the end, read as zeros
        low = min(self._floor, self._size)
        high = max(low, min(self._committed, self._size))
        for lo, hi, read in ((0, low, True), (low, high, False), (high, self._size, True)):
            lo, hi = max(lo, pos), min(hi, pos + n)
            if lo < hi:
                part = view[lo - pos : hi - pos]
                got = _pread_into(self._fd, part, lo) if read else 0
                if got < hi - lo:
                    part[got:] = bytes(hi - lo - got)
        if pos + n > self._size:
            view[max(0, self._size - pos) :] = bytes(pos + n - max(pos, self._size))
        starts, held = self._starts, self._held
        i = max(0, bisect.bisect_right(starts, pos) - 1)
        while i < len(starts) and starts[i] < pos + n:
            lo, hi = max(pos, starts[i]), min(pos + n, starts[i] + len(held[i]))
            if lo < hi:
                view[lo - pos : hi - pos] = held[i][lo - starts[i] : hi - starts[i]]
            i += 1

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        pos, n = self._pos, len(view)
        if self._failed is None and os.getpid() != self._pid:
            self._fail(OSError(f"{self.name}: written by a process forked from its writer's"))
        if self._failed is None:
            try:
                split = min(max(self._committed - pos, 0), n)
                if split:
                    self._hold_changed(pos, view[:split])
                if split < n:
                    _pwrite_all(self._fd, view[split:], pos + split)
            except BaseException as exc:  # (see the class's docstring)
                self._fail(exc)
        if self._failed is not None:
            self._lost.append((pos, bytes(view)))
        self._pos = pos + n
        self._size = max(self._size, pos + n)
        return n

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if size < self._size:
            if size < self._committed:
                self._floor = min(self._floor, size)
                self._cut_held(size)
            self._lost = [(at, _cut(d, size - at)) for at, d in self._lost if at < size]
            if self._failed is not None:  # the file is no longer cut: zeros if grown again
                self._lost.append((size, self._size - size))
            # past the commit's end the file itself is cut (nothing committed lies there)
            if self._failed is None and os.getpid() == self._pid:
                try:
                    if os.fstat(self._fd).st_size > max(size, self._committed):
                        os.ftruncate(self._fd, max(size, self._committed))
                except BaseException as exc:  # (see the class's docstring)
                    self._fail(exc)
        self._size = size
        return size

    def flush(self) -> None:
        """Nothing: libhdf5 flushes in the middle of its work too; :meth:`commit` is explicit."""

    # held writes -------------------------------------------------------------------------------
    #: a write into the committed bytes is compared with them in blocks of this many bytes
    #: (when it spans two or more): libhdf5 rewrites a whole chunk (a mebibyte) to add a few
    #: rows, and a block equal to the file needs neither the journal nor a write in place
    same_block = 1 << 16

    def _hold_changed(self, pos: int, data: memoryview) -> None:
        block = self.same_block
        n = min(len(data), self._floor - pos)  # (past the floor the file is not what reads show)
        if n < 2 * block:
            self._hold(pos, data)
            return
        run = None  # first offset of the run of blocks to hold
        disk, at = b"", 0  # the file's bytes from pos + at, read a mebibyte at a time
        for k in range(0, n, block):
            size = min(block, n - k)
            if k + size > at + len(disk):
                at, disk = k, os.pread(self._fd, max(size, min(n - k, _BLOCK)), pos + k)
            same = disk[k - at : k - at + size] == data[k : k + size].tobytes()
            if same and not self._overlaps_held(pos + k, pos + min(k + block, n)):
                if run is not None:
                    self._hold(pos + run, data[run:k])
                    run = None
            elif run is None:
                run = k
        if run is not None:
            self._hold(pos + run, data[run:n])
        if n < len(data):
            self._hold(pos + n, data[n:])

    def _overlaps_held(self, lo: int, hi: int) -> bool:
        i = bisect.bisect_right(self._starts, lo) - 1
        if i >= 0 and self._starts[i] + len(self._held[i]) > lo:
            return True
        return i + 1 < len(self._starts) and self._starts[i + 1] < hi

    def _hold(self, pos: int, data: memoryview) -> None:
        end = pos + len(data)
        starts, held = self._starts, self._held
        i = bisect.bisect_right(starts, pos) - 1
        if i >= 0 and end <= starts[i] + len(held[i]):  # inside one held stretch
            held[i][pos - starts[i] : end - starts[i]] = data
            return
        lo = i if i >= 0 and starts[i] + len(held[i]) >= pos else i + 1
        hi = lo
        while hi < len(starts) and starts[hi] <= end:
            hi += 1
        if lo == hi:  # touches no held stretch: one copy
            starts.insert(lo, pos)
            held.insert(lo, bytearray(data))
            return
        first = min(pos, starts[lo]) if lo < hi else pos
        last = max([end] + [starts[k] + len(held[k]) for k in range(lo, hi)])
        merged = bytearray(last - first)
        for k in range(lo, hi):
            merged[starts[k] - first : starts[k] - first + len(held[k])] = held[k]
        merged[pos - first : end - first] = data
        starts[lo:hi] = [first]
        held[lo:hi] = [merged]

    def _cut_held(self, size: int) -> None:
        i = bisect.bisect_left(self._starts, size)
        del self._starts[i:], self._held[i:]
        if i and self._starts[i - 1] + len(self._held[i - 1]) > size:
            del self._held[i - 1][size - self._starts[i - 1] :]

    # commits -----------------------------------------------------------------------------
    def commit(self, *, closing: bool = False) -> None:
        """Make what libhdf5 wrote so far the file's state on disk, in one step a kill cannot
        tear (the module's docstring). Call it after libhdf5's flush (or close). After a
        failure it raises instead: the failure itself the first time, then an ``OSError``
        saying the file holds its last commit (nothing, when ``closing`` and the failure was
        raised already: a writer closed while an interrupt unwinds)."""
        if self._failed is None and os.getpid() != self._pid:
            self._fail(OSError(f"{self.name}: committed by a process forked from its writer's"))
        if self._failed is not None:
            self._raise_failure(closing)
            return
        try:
            self._commit()
        except BaseException as exc:
            self._fail(exc)  # nothing more reaches the file (a journal there stays whole)
            self._reported = True
            raise

    def _raise_failure(self, closing: bool) -> None:
        exc = self._failed
        if not self._reported:
            self._reported = True
            raise exc
        if not closing:
            raise OSError(
                f"{self.name}: nothing more can be written: {type(exc).__name__} "
                f"({str(exc)[:200]}) stopped a write; the file holds its last commit"
            ) from exc

    def _commit(self) -> None:
        fd, end = self._fd, self._size
        if len(self._starts) > _MAX_RECORDS // 2:  # (never seen: one operation's writes)
            self._coalesce()
        zero_lo, zero_hi = self._floor, min(self._committed, end)
        if self._held or zero_lo < zero_hi:
            parts: list = []
            if zero_lo < zero_hi:
                parts.append(_RECORD.pack(zero_lo, (zero_hi - zero_lo) | _ZERO))
            for start, data in zip(self._starts, self._held, strict=True):
                parts += (_RECORD.pack(start, len(data)), data)
            crc, size = 0, 0
            for part in parts:
                crc, size = zlib.crc32(part, crc), size + len(part)
            start = max(os.fstat(fd).st_size, end)
            parts.append(_TRAILER.pack(MAGIC, start, end, size, crc))
            _pwrite_parts(fd, parts, start)  # the trailer whole: committed
            if zero_lo < zero_hi:
                _write_zeros(fd, zero_lo, zero_hi - zero_lo)
            for start, data in zip(self._starts, self._held, strict=True):
                _pwrite_all(fd, data, start)
        if os.fstat(fd).st_size != end:
            os.ftruncate(fd, end)
        self._committed = self._floor = end
        self._starts, self._held = [], []

    def _coalesce(self) -> None:
        """One held stretch from the first to the last (the bytes between as reads show
        them): a journal of fewer records than readers accept."""
        lo = self._starts[0]
        hi = self._starts[-1] + len(self._held[-1])
        merged = bytearray(hi - lo)
        self._read(memoryview(merged), lo)
        self._starts, self._held = [lo], [merged]

    def close(self) -> None:
        """Close the descriptor, which releases the lock (what was not committed is
        dropped)."""
        if self._fd >= 0 and os.getpid() == self._pid:
            os.close(self._fd)
        self._fd = -1
