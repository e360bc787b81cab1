"""The class order from a text file (``--class-names FILE``): one name a line; and the one
check that a class order (from a file, a dump or memory) names each class once."""

from __future__ import annotations

from ..errors import InvalidDataError
from ..text import clip

__all__ = ["read_class_names", "check_unique_names", "shown_key", "MAX_NAMES_BYTES"]

MAX_NAMES_BYTES = 64 << 20  #: the largest class names file read (one name a line)


#: line breaks of str.splitlines other than the line feed (and CR, which text mode reads
#: as one)
_OTHER_BREAKS = frozenset("\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def read_class_names(path: str) -> list[str]:
    """The class order from a text file: one name a line, in the order of the rows of W.

    Trailing blank lines are ignored; a blank line between names or a repeated name is bad
    input (:class:`InvalidDataError`), as is a file that is not UTF-8 text.
    """
    from ..errors import UnreadableFileError
    from .paths import check_input_file

    try:  # a regular file only: /dev/zero or a FIFO would be read (or waited on) forever
        st = check_input_file(path, "class names file")
    except UnreadableFileError as exc:
        raise InvalidDataError(str(exc)) from None
    if st.st_size > MAX_NAMES_BYTES:
        raise InvalidDataError(
            f"{clip(path)}: class names file of {st.st_size >> 20} MiB, more than the "
            f"{MAX_NAMES_BYTES >> 20} MiB one name a line may take"
        )
    try:  # utf-8-sig: a byte order mark (Windows editors write one) is no part of a name
        with open(path, encoding="utf-8-sig") as f:  # text mode: CRLF and CR end lines too
            text = f.read(MAX_NAMES_BYTES + 1)
    except UnicodeDecodeError:
        with open(path, "rb") as f:
            head = f.read(2)
        utf16 = " (it is UTF-16: save it as UTF-8)" if head in (b"\xff\xfe", b"\xfe\xff") else ""
        raise InvalidDataError(f"{path}: class names file is not UTF-8 text{utf16}") from None
    except OSError as exc:
        raise InvalidDataError(
            f"{path}: cannot read the class names file ({exc.strerror or exc})"
        ) from None
    # one name a line, lines ending at a line feed: str.splitlines also ends them at
    # \v, \f, \x1c-\x1e, \x85, U+2028 and U+2029, where editors and `wc -l` see none, so
    # 'dog<U+2028>eel' would be two names to ncinspect and one line to its author
    lines = text.split("\n")
    for i, line in enumerate(lines):
        other = next((c for c in line if c in _OTHER_BREAKS), None)
        if other is not None:
            raise InvalidDataError(
                f"{clip(path)}: line {i + 1} holds the line separator U+{ord(other):04X}, "
                "which some readers take as the end of a line and others do not; one class "
                "name a line, each line ending with a line feed"
            )
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InvalidDataError(f"{path}: class names file holds no names (one name a line)")
    first: dict[str, int] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            raise InvalidDataError(f"{path}: line {i + 1} is blank; expected one class name a line")
        j = first.setdefault(shown_key(line), i)
        if j == i:
            continue
        if lines[j] == line:  # two rows of W with one name: which one a name means is unknown
            raise InvalidDataError(
                f"{path}: class name {clip(repr(line))} appears twice (lines {j + 1} and {i + 1})"
            )
        raise InvalidDataError(
            f"{path}: class names {clip(repr(lines[j]))} (line {j + 1}) and {clip(repr(line))} "
            f"(line {i + 1}) look the same (they differ only in invisible characters or "
            "Unicode normalisation)"
        )
    return lines


def shown_key(name: str) -> str:
    """What a reader sees of a name: its canonical composition (NFC: ``e`` + a combining acute
    and the precomposed ``é`` are one) without the format characters that show nothing (zero-
    width spaces, the BOM, bidirectional marks, tag characters) and the blanks around it; the
    joiners that change how a script renders (ZWJ, ZWNJ) are kept."""
    import unicodedata

    if name.isascii():
        return name.strip()
    text = unicodedata.normalize("NFC", name)
    return "".join(
        ch for ch in text if ch in "\u200c\u200d" or unicodedata.category(ch) != "Cf"
    ).strip()


def check_unique_names(names: list[str], where: str, what: str = "class name") -> None:
    """Refuse a class order that names two classes alike (:class:`InvalidDataError`, naming
    ``where`` and both indices): per-class results are keyed by name, so two rows of W with
    one name would lose or merge a row, whatever the labels' type. Two names that differ
    only in what shows nothing (format characters, Unicode normalisation) are refused too:
    every table would show two rows of one name."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        j = first.setdefault(shown_key(name), i)
        if j == i:
            continue
        if names[j] == name:
            raise InvalidDataError(
                f"{where}: {what} {clip(repr(name))} appears twice (indices {j} and {i}); "
                "each class needs its own name"
            )
        raise InvalidDataError(
            f"{where}: {what}s {clip(repr(names[j]))} (index {j}) and {clip(repr(name))} "
            f"(index {i}) look the same (they differ only in invisible characters or Unicode "
            "normalisation); each class needs a name of its own"
        )
