"""Which reader a dump needs, from its content (never its suffix); PyTorch pickles are
recognised and refused, never loaded."""

from __future__ import annotations

import os

from ..errors import UnreadableFileError
from .paths import shown

__all__ = ["detect_format", "refuse_pickle"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


_NEVER = "ncinspect never unpickles files (loading a pickle can run any code)"


def _torch_pickle_error(
    path: str, what: str = "a PyTorch pickle (torch.save)"
) -> UnreadableFileError:
    return UnreadableFileError(
        f"{shown(path)}: is {what}, not an HDF5, NPZ or safetensors dump; {_NEVER}. Export it "
        "where you trust it, in two lines: `import torch; from safetensors.torch import "
        "save_file` then `save_file({k: v.detach().contiguous() for k, v in "
        f"torch.load({shown(os.path.basename(path), 60)!r}, weights_only=True).items()}}, "
        "'dump.safetensors')`; or numpy.savez('dump.npz', features=..., labels=...), or "
        "write the dump with ncinspect.DumpWriter (HDF5)"
    )


def _pickle_error(path: str, protocol: int | None) -> UnreadableFileError:
    version = f"protocol {protocol}" if protocol is not None else "protocol 0 or 1"
    return _torch_pickle_error(path, f"a Python pickle ({version}; torch.save or pickle.dump)")


def _pickle_protocol(head: bytes) -> int | None | bool:
    """The protocol of a pickle stream starting with ``head`` (a PROTO opcode for protocols
    2-5), None for a stream of protocol 0/1 opcodes (which has no header), False otherwise.

    The opcodes are only parsed (:func:`pickletools.genops`), never executed: ``head`` is a
    pickle when its opcodes parse up to STOP, or up to the end of ``head`` after a plausible
    first opcode."""
    import io
    import pickletools

    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return head[1]
    if head[:1] not in _PROTO01_FIRST:
        return False
    names: list[str] = []
    stream = io.BytesIO(head)
    try:
        for op, _arg, _pos in pickletools.genops(stream):
            names.append(op.name)
            if op.name == "STOP":
                return None
    except Exception:  # noqa: BLE001 - genops raises varied errors on non-pickles
        # a stream cut by ``head``'s end (a long pickle), or a short file cut before its
        # STOP (a writer killed mid-dump: the parse ran out of bytes, it met no bad opcode),
        # still counts when it parsed far, or when it starts as Python's pickler starts a
        # container (a few bytes: ``(dp0\n``, ``}q\x00``), which text does not
        cut = len(head) >= _PICKLE_SNIFF or stream.tell() >= len(head)
        return None if cut and (len(names) >= 8 or _pickler_start(names)) else False
    return False


#: how Python's pickler begins a protocol 0/1 stream of a container: the container, then
#: its memo entry (``(dp0\n`` = MARK DICT PUT, ``}q\x00`` = EMPTY_DICT BINPUT, ``(lp0``...)
_PICKLER_STARTS = {
    ("MARK", "DICT", "PUT"),
    ("MARK", "LIST", "PUT"),
    ("EMPTY_DICT", "BINPUT"),
    ("EMPTY_LIST", "BINPUT"),
    ("EMPTY_DICT", "LONG_BINPUT"),
    ("EMPTY_LIST", "LONG_BINPUT"),
}


def _pickler_start(names: list[str]) -> bool:
    return tuple(names[:3]) in _PICKLER_STARTS or tuple(names[:2]) in _PICKLER_STARTS


#: opcodes a protocol 0/1 pickle starts with: MARK, EMPTY_DICT/LIST/TUPLE, GLOBAL, NONE,
#: INT, LONG, FLOAT, STRING, UNICODE, BININT*, BINSTRING, BINUNICODE, BINFLOAT, NEWTRUE...
_PROTO01_FIRST = {bytes([c]) for c in b"(}])cNILFSVJKMTUXGdlt"}
_PICKLE_SNIFF = 1 << 16  #: bytes of a headerless file parsed as pickle opcodes


#: members of a zip without ``.npy`` members whose first bytes are parsed as pickle opcodes
_ZIP_SNIFF_MEMBERS = 32


def _zip_holds_pickle(path: str) -> str | None:
    """What a zip without ``.npy`` members holds, when that is a pickle: ``"torch"`` for a
    member ``data.pkl`` (what torch.save and torch.jit.save write), else the name of the
    first member (of the first :data:`_ZIP_SNIFF_MEMBERS`) whose first bytes parse as
    pickle opcodes (a torch save whose ``data.pkl`` was renamed, a zip of ``.pkl`` files);
    None otherwise. Nothing is unpickled: at most :data:`_PICKLE_SNIFF` bytes of a member
    are inflated, and only parsed."""
    import zipfile

    from .npz import ZIP_ERRORS

    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            if any(n.endswith(".npy") for n in names):
                return None
            if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                return "torch"
            for info in infos[:_ZIP_SNIFF_MEMBERS]:
                if info.is_dir() or info.file_size == 0:
                    continue
                try:
                    with zf.open(info) as member:
                        head = member.read(_PICKLE_SNIFF)
                except ZIP_ERRORS:  # an encrypted member, an unknown method: not sniffed
                    continue
                if _pickle_protocol(head) is not False:
                    return info.filename
    except ZIP_ERRORS:  # the NPZ reader reports what is wrong with the archive
        return None
    return None


def _zip_pickle_error(path: str, held: str) -> UnreadableFileError:
    if held == "torch":
        return _torch_pickle_error(path)
    return _torch_pickle_error(
        path, f"a zip archive holding a Python pickle (member {shown(held, 80)!r})"
    )


def _is_torch_legacy(path: str, protocol: int | None) -> bool:
    """torch.save's legacy (pre-zip) format: a pickle of torch's magic number first."""
    import io
    import pickletools

    magic = 0x1950A86A20F9469CFC6C
    try:
        with open(path, "rb") as f:
            for op, arg, _pos in pickletools.genops(io.BytesIO(f.read(64))):
                if op.name in ("PROTO", "FRAME", "MARK"):
                    continue
                return arg == magic or arg == str(magic)
    except Exception:  # noqa: BLE001 - not a pickle we can parse: not torch's
        return False
    return False


#: compressed containers a pickle (or a dump) arrives in: magic bytes -> name
_WRAPPERS = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
    (b"\x28\xb5\x2f\xfd", "Zstandard"),
    (b"\x04\x22\x4d\x18", "LZ4"),
)


def _inflated_head(head: bytes, kind: str) -> bytes | None:
    """The first bytes of what a ``kind``-compressed ``head`` holds (at most
    :data:`_PICKLE_SNIFF` bytes of output), or None when it cannot be inflated here."""
    import bz2
    import lzma
    import zlib

    makers = {
        "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
        "zlib": zlib.decompressobj,
        "xz": lzma.LZMADecompressor,
        "bzip2": bz2.BZ2Decompressor,
    }
    if kind not in makers:
        return None
    try:
        obj = makers[kind]()
        if kind in ("gzip", "zlib"):
            return obj.decompress(head, _PICKLE_SNIFF)
        return obj.decompress(head, max_length=_PICKLE_SNIFF)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError):
        return None


def _an(word: str) -> str:
    return ("an " if word[0].lower() in "aeiox" else "a ") + word


def _wrapped_error(path: str, head: bytes) -> UnreadableFileError | None:
    """The refusal of a file that is not a dump but says what it is: a compressed file
    (a pickle inside one, as joblib and ``pickle.dump(gzip.open(...))`` write, is named a
    pickle) or a NumPy ``.npy`` array (object arrays hold pickles). None otherwise."""
    kind = next((name for magic, name in _WRAPPERS if head.startswith(magic)), None)
    if kind is None and head[:1] == b"x" and head[1:2] in (b"\x01", b"^", b"\x9c", b"\xda"):
        kind = "zlib" if _inflated_head(head, "zlib") else None
    if kind is not None:
        inner = _inflated_head(head, kind)
        if inner and _pickle_protocol(inner) is not False:
            return _torch_pickle_error(
                path, f"{_an(kind)}-compressed Python pickle (joblib, or pickle.dump into it)"
            )
        return UnreadableFileError(
            f"{shown(path)}: is {_an(kind)}-compressed file, not an HDF5, NPZ or safetensors dump; "
            "ncinspect reads dumps as they are (HDF5 and NPZ compress inside): decompress it"
        )
    if head.startswith(b"\x93NUMPY"):
        import io

        import numpy as np

        try:
            stream = io.BytesIO(head)
            version = np.lib.format.read_magic(stream)
            reader = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = reader(stream)
            objects = dtype.hasobject
        except Exception:  # noqa: BLE001 - a damaged header: just say what the file is
            shape, objects = None, False
        what = (
            "a NumPy .npy array of Python objects, which are pickles (ncinspect never "
            "unpickles files)"
            if objects
            else f"a NumPy .npy file (one array{'' if shape is None else f' of shape {shape}'})"
        )
        return UnreadableFileError(
            f"{shown(path)}: is {what}, not a dump; store the arrays by name in one NPZ: "
            "numpy.savez('dump.npz', features=..., labels=..., weights=...)"
        )
    return None


def refuse_pickle(path: str) -> None:
    """Raise the one-line pickle refusal when ``path`` is a Python pickle or a PyTorch save
    (by content: a zip holding ``data.pkl``, a pickle protocol header, or protocol 0/1
    opcodes); return quietly otherwise. Nothing is unpickled. For readers of other inputs
    than dumps (``train --dataset``), which then say what else is wrong with the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(_PICKLE_SNIFF)
    except OSError:
        return  # the caller's own open says what is wrong
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        held = _zip_holds_pickle(path)
        if held is not None:
            raise _zip_pickle_error(path, held)
        return
    protocol = _pickle_protocol(head)
    if protocol is not False:
        if _is_torch_legacy(path, protocol):
            raise _torch_pickle_error(path, "a PyTorch pickle (torch.save, legacy format)")
        raise _pickle_error(path, protocol)
    wrapped = _wrapped_error(path, head)
    if wrapped is not None and "pickle" in str(wrapped):
        raise wrapped


def _hdf5_superblock(f, size: int) -> int | None:
    """The offset of an HDF5 superblock after a user block (512, 1024, 2048, ... bytes),
    or None: its signature followed by a superblock version libhdf5 reads (0-3)."""
    offset = 512
    while offset + 9 <= size:
        f.seek(offset)
        block = f.read(9)
        if block[:8] == _HDF5_SIGNATURE and block[8] <= 3:
            return offset
        offset *= 2
    return None


def _refuse_polyglot(f, size: int, path: str, what: str) -> None:
    """Refuse a file that is ``what`` and also an HDF5 file (its superblock after a user
    block, which may hold anything): h5py and HDFView read the HDF5 arrays, ncinspect would
    read the others. One file, two dumps; ncinspect does not pick one."""
    offset = _hdf5_superblock(f, size)
    if offset is not None:
        raise UnreadableFileError(
            f"{shown(path)}: is {what} and also an HDF5 file (its superblock at byte "
            f"{offset}, after a user block); the two hold different arrays to different "
            "readers, so ncinspect does not pick one: rewrite the dump in one format"
        )


def detect_format(path: str) -> str:
    """Return ``"hdf5"``, ``"npz"`` or ``"safetensors"`` from the file's content (not its
    suffix). PyTorch pickles (``torch.save``: a zip holding ``data.pkl``, or a bare pickle)
    are recognised and refused, never loaded."""
    from .paths import check_input_file
    from .safetensors import is_safetensors

    check_input_file(path)  # a FIFO or device is refused before open() could block on it
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(16)
            if size == 0:
                raise UnreadableFileError(f"{path}: file is empty (0 bytes)")
            if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
                held = _zip_holds_pickle(path)
                if held is not None:
                    raise _zip_pickle_error(path, held)
                _refuse_polyglot(f, size, path, "a zip archive (NPZ)")
                return "npz"
            if is_safetensors(head, size):
                _refuse_polyglot(f, size, path, "a safetensors file")
                return "safetensors"
            f.seek(0)
            protocol = _pickle_protocol(f.read(_PICKLE_SNIFF))
            if protocol is not False:
                if _is_torch_legacy(path, protocol):
                    raise _torch_pickle_error(path, "a PyTorch pickle (torch.save, legacy format)")
                raise _pickle_error(path, protocol)
            offset = 0
            while offset + 8 <= size:  # HDF5 superblock at 0, 512, 1024, 2048, ...
                f.seek(offset)
                if f.read(8) == _HDF5_SIGNATURE:
                    return "hdf5"
                offset = 512 if offset == 0 else offset * 2
            f.seek(0)
            wrapped = _wrapped_error(path, f.read(_PICKLE_SNIFF))
            if wrapped is not None:
                raise wrapped
    except FileNotFoundError:
        raise UnreadableFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnreadableFileError(f"{path}: is a directory, not a dump file") from None
    except PermissionError:
        raise UnreadableFileError(f"{path}: permission denied") from None
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    raise UnreadableFileError(
        f"{shown(path)}: not an HDF5 or NPZ (or safetensors) dump (starts with bytes {head[:8]!r}; "
        "expected the HDF5 signature, a zip archive or a safetensors header)"
    )
