"""Which reader a dump needs, from its content (never its suffix); PyTorch pickles are
recognised and refused, never loaded."""

from __future__ import annotations

import os

from ..errors import UnreadableFileError

__all__ = ["detect_format"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _torch_pickle_error(path: str) -> UnreadableFileError:
    return UnreadableFileError(
        f"{path}: is a PyTorch pickle (torch.save); ncinspect never unpickles files. Convert it "
        "where you trust it, in two lines: `import torch; from safetensors.torch import "
        "save_file` then `save_file({k: v.detach().contiguous() for k, v in "
        f"torch.load({os.path.basename(path)!r}, weights_only=True).items()}}, "
        "'dump.safetensors')`; or write the dump with ncinspect.DumpWriter"
    )


def _zip_holds_pickle(path: str) -> bool:
    """A zip whose members include ``data.pkl``: what torch.save (and torch.jit.save) write."""
    import zipfile

    from .npz import ZIP_ERRORS

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except ZIP_ERRORS:  # the NPZ reader reports what is wrong with the archive
        return False
    return any(n == "data.pkl" or n.endswith("/data.pkl") for n in names) and not any(
        n.endswith(".npy") for n in names
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
                if _zip_holds_pickle(path):
                    raise _torch_pickle_error(path)
                return "npz"
            if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
                raise _torch_pickle_error(path)  # pickle protocol 2-5 header
            if is_safetensors(head, size):
                return "safetensors"
            offset = 0
            while offset + 8 <= size:  # HDF5 superblock at 0, 512, 1024, 2048, ...
                f.seek(offset)
                if f.read(8) == _HDF5_SIGNATURE:
                    return "hdf5"
                offset = 512 if offset == 0 else offset * 2
    except FileNotFoundError:
        raise UnreadableFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnreadableFileError(f"{path}: is a directory, not a dump file") from None
    except PermissionError:
        raise UnreadableFileError(f"{path}: permission denied") from None
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    raise UnreadableFileError(
        f"{path}: not an HDF5 or NPZ (or safetensors) dump (starts with bytes {head[:8]!r}; "
        "expected the HDF5 signature, a zip archive or a safetensors header)"
    )
