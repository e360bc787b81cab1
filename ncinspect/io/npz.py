"""NPZ reader: a flat zip of ``.npy`` members whose names use ``/`` as the group separator.

Members stored uncompressed (``numpy.savez``) are streamed: their raw bytes are located in
the zip file and rows are read by offset. Compressed members (``numpy.savez_compressed``)
cannot be sought, so they are read whole, with a note about the memory that takes, and only
when they fit the read bound (:func:`ncinspect.budget.read_bound`). Nothing is ever
unpickled: object arrays are refused.

Every header is checked before anything is allocated: the shape must be non-negative and
the member must hold the bytes that shape and item size declare. Two members with the same
name are refused (a zip may hold both; which one a reader picks is arbitrary), as are
encrypted members and members whose compression is not stored/deflate/bzip2/lzma.
"""

from __future__ import annotations

import contextlib
import lzma
import math
import os
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

from ..budget import fmt_bytes, read_bound, reserve_read
from ..errors import (
    AmbiguousArrayError,
    ResourceLimitError,
    UnreadableFileError,
    UnsupportedDtypeError,
)
from .paths import shown
from .sources import ArraySource, refuse_bad_code_points, refuse_unholdable
from .tree import Node, Placed, loads_json, plain, split_name

__all__ = ["read_npz_tree", "ZIP_ERRORS"]

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header (30 bytes)
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
META_LIMIT = 16 << 20  #: bytes a ``meta`` member may hold

#: What zipfile, zlib/bz2/lzma and numpy's header parser raise on broken members.
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,  # encrypted members, unsupported compression (NotImplementedError)
    struct.error,
    zlib.error,
    lzma.LZMAError,
    UnicodeError,
    OverflowError,
    KeyError,
    IndexError,
    TypeError,
    SyntaxError,
    RecursionError,
    MemoryError,  # a header literal nested too deeply for the parser
)


def _message(exc: BaseException) -> str:
    """A one-line reason, never repeating numpy's advice to trust the file with pickles."""
    text = str(exc)
    if "max_header_size" in text or "allow_pickle" in text:
        return "the .npy header is longer than a valid header can be; refused"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return shown(lines[0] if lines else type(exc).__name__, 200)


def _v3_reader():
    """numpy's reader of any ``.npy`` header version (private: ``numpy.lib.format`` before
    numpy 2, ``numpy.lib._format_impl`` since), or None."""
    reader = getattr(np.lib.format, "_read_array_header", None)
    if reader is None:
        try:
            from numpy.lib import _format_impl
        except ImportError:
            return None
        reader = getattr(_format_impl, "_read_array_header", None)
    return reader


def _read_header(f, where: str):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    # 3.0 is 2.0 with a UTF-8 header (numpy writes it for non-latin-1 field names, and
    # np.load reads it): 0.2 refused it as "not supported"
    reader = _v3_reader() if version == (3, 0) else None
    if reader is not None:
        return reader(f, version)
    raise UnreadableFileError(f"{where}: .npy format version {version} is not supported")


_ZIP64_EXTRA = 0x0001
_UNICODE_PATH = 0x7075  #: Info-ZIP Unicode Path extra field (Python 3.12+ names members by it)


def _extra_fields(extra: bytes):
    """``(id, data)`` of each field of a zip extra block (a field cut short ends the walk)."""
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        yield tag, extra[i + 4 : i + 4 + size]
        i += 4 + size


def _unicode_name(extra: bytes) -> str | None:
    """The name an Info-ZIP Unicode Path field in ``extra`` gives, or None."""
    for tag, data in _extra_fields(extra):
        if tag == _UNICODE_PATH and len(data) >= 5:
            return data[5:].decode("utf-8", "surrogateescape")
    return None


def check_member_name(info: zipfile.ZipInfo, shown_path: str) -> None:
    """Refuse a member that zip readers name two ways: a NUL in its name (zipfile cuts the
    name there, other readers keep it), a backslash (a folder separator to zipfile on
    Windows, a character elsewhere) or an Info-ZIP Unicode Path field naming it something
    else (Python 3.12+ names the member by the field, 3.10 and 3.11 by its name: one file,
    two sets of arrays)."""
    raw = info.orig_filename
    where = f"{shown_path}:/{shown(raw)}"
    if "\x00" in raw:
        raise AmbiguousArrayError(
            f"{where}: the member's name holds a NUL character; zip readers cut it there "
            f"({shown(raw.split(chr(0))[0])!r}) or keep it, so ncinspect does not pick one: "
            "rename the member"
        )
    if "\\" in raw and raw.endswith(".npy"):  # an array's name (other members are not read)
        raise AmbiguousArrayError(
            f"{where}: the member's name holds a backslash, which Python's zipfile on Windows "
            "reads as a folder separator ('/') and elsewhere as a character: one archive, two "
            "sets of arrays; ncinspect does not pick one: rename the member"
        )
    other = _unicode_name(info.extra)
    if other is not None and other != raw:
        raise AmbiguousArrayError(
            f"{where}: the member is named {shown(raw)!r} and, in its Unicode Path field, "
            f"{shown(other)!r}; zip readers differ in which they use (Python 3.12+ the "
            "field), so ncinspect does not pick one: rewrite the archive"
        )


def _local_sizes(fields: tuple, extra: bytes) -> tuple[int, int]:
    """``(compressed size, size)`` a local header states, zip64 sizes taken from its extra
    field (a local zip64 field holds the size, then the compressed size)."""
    csize, usize = fields[8], fields[9]
    if 0xFFFFFFFF in (csize, usize):
        for tag, data in _extra_fields(extra):
            if tag == _ZIP64_EXTRA and len(data) >= 16:
                usize, csize = struct.unpack_from("<QQ", data)
                break
    return csize, usize


def _check_local(info: zipfile.ZipInfo, fields: tuple, extra: bytes, where: str) -> None:
    """Refuse a member whose local header disagrees with the central directory, or a stored
    member whose compressed size is not its size. zipfile (and numpy) read by the central
    directory; readers that stream local headers read by them: one member, two arrays.
    A local header with a data descriptor (flag bit 3) states no CRC or sizes."""
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise UnreadableFileError(
            f"{where}: the zip stores this member uncompressed in {info.compress_size} bytes "
            f"but says it holds {info.file_size}; readers differ in what they read, so "
            "ncinspect does not pick one: rewrite the archive"
        )
    flags, method, crc = fields[3], fields[4], fields[7]
    said: list[tuple[str, object, object]] = []
    if method != info.compress_type:
        said.append(("compression method", method, info.compress_type))
    if (flags ^ info.flag_bits) & 0x1:
        said.append(("encryption flag", flags & 0x1, info.flag_bits & 0x1))
    if not flags & 0x8:
        csize, usize = _local_sizes(fields, extra)
        said += [
            (what, local, central)
            for what, local, central in (
                ("CRC-32", crc, info.CRC),
                ("compressed size", csize, info.compress_size),
                ("size", usize, info.file_size),
            )
            if local != central
        ]
    other = _unicode_name(extra)
    if other is not None and other != info.orig_filename:
        said.append(("Unicode Path name", repr(shown(other)), repr(shown(info.orig_filename))))
    if said:
        what, local, central = said[0]
        raise UnreadableFileError(
            f"{where}: the member's local header gives {what} {local}, the zip's central "
            f"directory {central}; readers differ in which they use, so ncinspect does not "
            "pick one: rewrite the archive"
        )


class NpzMemberSource(ArraySource):
    """One ``.npy`` member of an NPZ file."""

    def __init__(
        self,
        path: str,
        info: zipfile.ZipInfo,
        where: str,
        notes: list[str],
        *,
        max_read: int | None = None,
        explicit_limit: bool = False,
        zf: zipfile.ZipFile | None = None,
        raw: Any = None,
    ):
        """``zf`` and ``raw``: the archive (and the file, binary) already open, shared by
        every member of it: opening the archive again for each member re-reads its whole
        central directory, so a file of 100,000 tiny members took hours (quadratic)."""
        self.path = path
        self.info = info
        self.where = where
        self._notes = notes
        self._max_read = read_bound(None) if max_read is None else max_read
        self._explicit_limit = explicit_limit
        self._whole: np.ndarray | None = None
        if info.flag_bits & 0x1:
            raise UnreadableFileError(f"{where}: the member is encrypted; ncinspect cannot read it")
        if info.compress_type not in _METHODS:
            raise UnreadableFileError(
                f"{where}: the member uses zip compression method {info.compress_type}, which "
                "is not supported (stored, deflate, bzip2 or lzma)"
            )
        name_len, extra_len = self._local_header(path, raw)
        try:
            with contextlib.ExitStack() as stack:
                if zf is None:
                    zf = stack.enter_context(zipfile.ZipFile(path))
                f = stack.enter_context(zf.open(info))
                shape, fortran, dtype = _read_header(f, where)
                header_len = f.tell()
        except UnreadableFileError:
            raise
        except ZIP_ERRORS as exc:
            raise UnreadableFileError(
                f"{where}: not a valid .npy member ({_message(exc)})"
            ) from None
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            raise UnreadableFileError(f"{where}: the .npy header declares shape {shape}")
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.fortran = fortran
        self.needs_pickle = self.dtype.hasobject
        declared = math.prod(self.shape) * self.dtype.itemsize
        held = info.file_size - header_len
        if not self.needs_pickle and declared > held:
            raise UnreadableFileError(
                f"{where}: the .npy header declares shape {self.shape} of {self.dtype} "
                f"({declared} bytes) but the member holds {max(held, 0)} bytes"
            )
        refuse_unholdable(self.shape, self.dtype.itemsize, where)  # (0, 2**70): 0 bytes
        if self.dtype.itemsize == 0 and math.prod(self.shape):
            # '<U0', '|S0', '|V0': numpy's reader makes empty values of no bytes, streaming
            # exited 4 ("itemsize cannot be zero"); no value of them says anything
            raise UnsupportedDtypeError(
                f"{where}: the .npy header declares dtype {self.dtype} of 0 bytes a value, so "
                f"its {math.prod(self.shape)} values hold nothing; refused"
            )
        self._data_offset: int | None = None
        self._header_len = header_len
        self._crc: int | None = None  # running CRC-32 of the rows read in order so far
        self._crc_rows = 0
        if info.compress_type == zipfile.ZIP_STORED and not fortran and not self.needs_pickle:
            self._data_offset = (
                info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + header_len
            )
            if self._data_offset + declared > os.path.getsize(path):
                raise UnreadableFileError(
                    f"{where}: file is truncated (the member's {declared} data bytes end "
                    "past the end of the file)"
                )
            self._crc = zlib.crc32(self._raw(self._data_offset - header_len, header_len))
            if not self.shape or self.shape[0] == 0:  # nothing streamed: check it now
                self._crc = zlib.crc32(self._raw(self._data_offset, declared), self._crc)
                self._verify_crc()

    def _local_header(self, path: str, raw: Any) -> tuple[int, int]:
        """``(name length, extra length)`` of the member's local header, checked against the
        central directory (:func:`_check_local`)."""
        info, where = self.info, self.where
        try:
            with contextlib.ExitStack() as stack:
                if raw is None:
                    raw = stack.enter_context(open(path, "rb"))
                raw.seek(info.header_offset)
                fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
                raw.seek(info.header_offset + _LOCAL_HEADER.size + fields[10])
                extra = raw.read(fields[11])
        except (OSError, struct.error, ValueError, OverflowError) as exc:
            raise UnreadableFileError(
                f"{where}: corrupt zip local header ({_message(exc)})"
            ) from None
        if fields[0] != b"PK\x03\x04":
            raise UnreadableFileError(f"{where}: corrupt zip local header")
        _check_local(info, fields, extra, where)
        return fields[10], fields[11]

    def _check_pickle(self) -> None:
        if self.needs_pickle:
            raise UnsupportedDtypeError(
                f"{self.where}: member holds Python objects ({self.dtype}) that would need "
                "unpickling; ncinspect never loads pickles; save numeric or string arrays"
            )

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        self._check_pickle()
        if self._data_offset is not None and self.shape:
            n = self.shape[0]
            start, stop, _ = slice(start, stop).indices(n)
            row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])
            count = max(0, stop - start)
            try:
                with open(self.path, "rb") as raw:
                    raw.seek(self._data_offset + start * row_bytes)
                    buf = raw.read(count * row_bytes)
            except OSError as exc:
                raise UnreadableFileError(f"{self.where}: cannot read ({_message(exc)})") from None
            if len(buf) != count * row_bytes:
                raise UnreadableFileError(f"{self.where}: file is truncated (rows {start}:{stop})")
            if start == self._crc_rows and count and self._crc is not None:
                self._crc = zlib.crc32(buf, self._crc)
                self._crc_rows = stop
                if stop == n:
                    self._verify_crc()
            out = np.frombuffer(buf, dtype=self.dtype).reshape((count,) + self.shape[1:])
            refuse_bad_code_points(out, self.where, start)
            return out
        if self._whole is None:
            self._read_whole()
            refuse_bad_code_points(self._whole, self.where)
        if self._whole.ndim == 0:
            return self._whole
        return self._whole[start:stop]

    def _raw(self, offset: int, size: int) -> bytes:
        try:
            with open(self.path, "rb") as raw:
                raw.seek(offset)
                return raw.read(size)
        except OSError as exc:
            raise UnreadableFileError(f"{self.where}: cannot read ({_message(exc)})") from None

    def _verify_crc(self) -> None:
        """Once every row of a stored member has been read in order: its CRC-32 must match
        the zip's (a stored member is streamed, so zipfile never checks it)."""
        end = self._data_offset + self.nbytes
        rest = self.info.file_size - self._header_len - self.nbytes
        crc = zlib.crc32(self._raw(end, rest), self._crc) if rest > 0 else self._crc
        self._crc = None
        if crc != self.info.CRC:
            raise UnreadableFileError(
                f"{self.where}: the member's data do not match its CRC-32 (the file is corrupt)"
            )

    def _read_whole(self) -> None:
        # a stored member in Fortran order is read whole too (its rows are not contiguous):
        # its advice is C order, not "store it uncompressed", which it already is
        if self.info.compress_type == zipfile.ZIP_STORED and self.fortran:
            what, advice = "Fortran-ordered member", "save it in C order (np.ascontiguousarray)"
        else:
            what, advice = "compressed member", "store it uncompressed (numpy.savez)"
        if self.nbytes > self._max_read:
            how = "the memory limit" if self._explicit_limit else "the default read bound"
            raise ResourceLimitError(
                f"{self.where}: {what} of {fmt_bytes(self.nbytes)} must be read "
                f"whole, over {how} of {fmt_bytes(self._max_read)}; give --memory-limit "
                f"{fmt_bytes(self.nbytes * 1.25).replace(' ', '')} or more, or {advice} "
                "to stream it"
            )
        if self.nbytes > (64 << 20):
            self._notes.append(
                f"{self.where} is a {what} and is read whole into memory "
                f"({self.nbytes / 2**20:.0f} MiB); {advice} to stream it"
            )
        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.info) as f:
                self._whole = np.lib.format.read_array(f, allow_pickle=False)
        except ZIP_ERRORS as exc:
            raise UnreadableFileError(
                f"{self.where}: cannot read member ({_message(exc)})"
            ) from None


def _read_meta(source: NpzMemberSource) -> dict:
    source._check_pickle()
    if source.shape != () or source.dtype.kind not in "SU":
        raise UnreadableFileError(
            f"{source.where}: meta must be a 0-d string array holding JSON "
            f"(got shape {source.shape} of {source.dtype})"
        )
    if source.nbytes > META_LIMIT:
        raise UnreadableFileError(
            f"{source.where}: meta of {fmt_bytes(source.nbytes)} is over the "
            f"{fmt_bytes(META_LIMIT)} a metadata record may take"
        )
    text = source.read_all().item()
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnreadableFileError(f"{source.where}: meta is not UTF-8 text ({exc})") from None
    if not isinstance(text, str):
        raise UnreadableFileError(f"{source.where}: meta must be a 0-d string array holding JSON")
    try:
        meta = plain(loads_json(text, f"{source.where}: meta"))
    except RecursionError:
        raise UnreadableFileError(f"{source.where}: meta JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers beyond Python's digit limit
        raise UnreadableFileError(
            f"{source.where}: meta is not valid JSON ({_message(exc)})"
        ) from None
    if not isinstance(meta, dict):
        raise UnreadableFileError(f"{source.where}: meta JSON must be an object")
    return meta


def read_npz_tree(path: str, notes: list[str], *, memory_limit: int | None = None) -> Node:
    """Build the group tree of an NPZ file (``memory_limit`` bounds whole-member reads)."""
    shown_path = shown(path)
    with contextlib.ExitStack() as stack:
        try:
            zf = stack.enter_context(zipfile.ZipFile(path))
            raw = stack.enter_context(open(path, "rb"))
        except ZIP_ERRORS as exc:
            raise UnreadableFileError(
                f"{shown_path}: not a readable NPZ file ({_message(exc)})"
            ) from None
        return _build(path, shown_path, zf, raw, notes, memory_limit)


_LOCAL_SIGNATURE = b"PK\x03\x04"
_GAP_READ = 1 << 20  #: bytes of a gap between members searched for a local header


def _check_layout(zf: zipfile.ZipFile, raw: Any, shown_path: str) -> None:
    """Refuse an archive whose members' bytes overlap, or whose bytes between members (or
    before the central directory) hold a local header the directory does not list: zipfile
    and numpy read the members the central directory lists, a reader that streams the local
    headers (unzip -p, Java's ZipInputStream) reads the hidden one, or reads a member whose
    local header lies inside another member's data as part of that data. Gaps without a
    local header (a data descriptor, padding) are left alone."""
    spans = []
    for info in zf.infolist():
        try:
            raw.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
        except (OSError, struct.error, ValueError, OverflowError):
            return  # a member that is read says what is wrong with its header
        end = info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11]
        spans.append((info.header_offset, end + info.compress_size, info.orig_filename))
    spans.sort()
    last_end, last_name = 0, None
    stop = getattr(zf, "start_dir", None)
    for begin, end, name in [*spans, (stop, stop, None)]:
        if begin is None:
            break
        if begin < last_end:
            raise UnreadableFileError(
                f"{shown_path}:/{shown(name or 'central directory')}: its bytes lie inside "
                f"those of member {shown(last_name)!r}; readers differ in which member they "
                "read there, so ncinspect does not pick one: rewrite the archive"
            )
        if begin > last_end:
            raw.seek(last_end)
            gap = raw.read(min(begin - last_end, _GAP_READ))
            at = gap.find(_LOCAL_SIGNATURE)
            if at >= 0:
                raise UnreadableFileError(
                    f"{shown_path}: byte {last_end + at} starts a zip member that the "
                    "archive's central directory does not list (hidden from numpy, seen by "
                    "readers that stream the archive); ncinspect does not pick one: rewrite "
                    "the archive"
                )
        last_end, last_name = max(last_end, end), name


def _build(path, shown_path, zf, raw, notes, memory_limit) -> Node:
    infos = zf.infolist()
    _check_layout(zf, raw, shown_path)
    root = Node("/")
    placed = Placed(root, shown_path)
    max_read = read_bound(memory_limit)
    others: list[str] = []  # members that are not .npy: not read, but numpy names them
    whole = 0  # bytes of the largest member read whole (compressed, or Fortran order)
    for info in infos:
        check_member_name(info, shown_path)
        name = info.filename
        if not name or name.endswith("/"):  # a directory entry (or a nameless one)
            continue
        if not name.endswith(".npy"):
            others.append(name)
            continue
        parts = split_name(name[: -len(".npy")])
        if not parts:
            continue
        where = f"{shown_path}:/{shown('/'.join(parts))}"
        node = placed.node_of(name, parts)
        source = NpzMemberSource(
            path,
            info,
            where,
            notes,
            max_read=max_read,
            explicit_limit=memory_limit is not None,
            zf=zf,
            raw=raw,
        )
        if parts[-1] == "meta":
            node.attrs.update(_read_meta(source))
        else:
            node.arrays[parts[-1]] = source
            if source._data_offset is None and not source.needs_pickle:
                whole = max(whole, source.nbytes)  # read whole, then held while in use
    # a compressed member is read whole and held while its snapshot is analysed: under a
    # process limit, plans leave room for the largest (``--memory-limit 500MiB`` peaked at
    # 746 MiB on a 305 MiB compressed features member, the plan's buffers beside it)
    reserve_read(memory_limit, whole)
    for name in others:
        # ``features`` beside ``features.npy``: numpy's ``np.load(path)["features"]`` reads
        # the member without the suffix, ncinspect the one with it; neither is picked
        raw = placed.seen.get(split_name(name))
        if raw is not None:
            raise AmbiguousArrayError(
                f"{shown_path}:/{shown(name)}: two members of the file resolve to this name "
                f"({shown(raw)!r} and {shown(name)!r}; numpy's np.load reads the second); "
                "ncinspect does not pick one: rename or drop one of them"
            )
    return root
