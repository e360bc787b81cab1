"""Fuzz: mutated small HDF5 and NPZ dumps through ``report`` and ``info``.

Every run must end with exit code 0, 2 or 3, print no traceback, finish in time and leave
the input byte-identical; an output path naming the input must never replace it.

The mutations are seeded (reruns are identical). CI runs about a minute of cases; set
``NCINSPECT_FUZZ_SECONDS`` (default 40) for longer runs and ``NCINSPECT_FUZZ_SEED`` for
another sequence. The CLI walks HDF5 metadata in a child process first (io/probe.py), so
metadata that spins or crashes libhdf5 is an ordinary exit 3 here (the probe is given 5 s).
A case that still kills the process inside the HDF5 C library (a segfault while reading
array data, which no Python code can catch) or spins there for 20 s (killed by an alarm)
is reported as a warning and the run goes on;
``NCINSPECT_FUZZ_STRICT=1`` makes it a failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import warnings

import h5py
import numpy as np

import ncinspect

from .helpers import killed_in_commit, make_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ncinspect.__file__)))
SECONDS = float(os.environ.get("NCINSPECT_FUZZ_SECONDS", "40"))
SEED = int(os.environ.get("NCINSPECT_FUZZ_SEED", "20261201"))

# One worker process runs the cases in-process (fast), announcing each case first, so a
# hang is caught by the parent's timeout and named by the last announced case.
_WORKER = r"""
import contextlib, hashlib, io, json, os, signal, sys, time
import numpy as np
from ncinspect.cli import main

seeds, outdir = json.loads(sys.argv[1]), sys.argv[2]
seconds, seed, first = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = None
CASE_SECONDS = 20
signal.signal(signal.SIGALRM, signal.SIG_DFL)


def mutate(data: bytes) -> tuple[str, bytes]:
    b = bytearray(data)
    kind = rng.integers(0, 6)
    if kind == 0:  # flip a few bytes anywhere
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(len(b)))] ^= int(rng.integers(1, 256))
        return "flip", bytes(b)
    if kind == 1:  # truncate
        return "truncate", bytes(b[: int(rng.integers(1, len(b)))])
    if kind == 2:  # edit the header region (superblock, object headers / local headers)
        for _ in range(int(rng.integers(1, 5))):
            b[int(rng.integers(min(len(b), 2048)))] = int(rng.integers(256))
        return "header", bytes(b)
    if kind == 3:  # edit the tail (zip central directory, HDF5 heaps written last)
        for _ in range(int(rng.integers(1, 5))):
            b[len(b) - 1 - int(rng.integers(min(len(b), 512)))] = int(rng.integers(256))
        return "tail", bytes(b)
    if kind == 4:  # overwrite a 4- or 8-byte field with an extreme value
        pos = int(rng.integers(len(b) - 8))
        value = [0, 0xFFFFFFFF, 0x7FFFFFFF, 1 << 31, 2**64 - 1][int(rng.integers(5))]
        width = 8 if value > 0xFFFFFFFF or rng.random() < 0.5 else 4
        b[pos : pos + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
        return "field", bytes(b)
    start = int(rng.integers(len(b)))  # zero a block
    b[start : start + int(rng.integers(1, 256))] = bytes(min(255, len(b) - start))
    return "zero", bytes(b[: len(data)])


t0 = time.time()
i = first
while time.time() - t0 < seconds:
    for name, src in seeds.items():
        rng = np.random.default_rng([seed, i])  # case i is the same whatever ran before
        data = open(src, "rb").read()
        kind, mutant = mutate(data)
        path = os.path.join(outdir, f"case{i % 50}{os.path.splitext(src)[1]}")
        with open(path, "wb") as f:
            f.write(mutant)
        digest = hashlib.sha256(mutant).hexdigest()
        for args in (["report", path, "-q", "--json", "-"], ["info", path]):
            print(json.dumps({"start": i, "seed": name, "kind": kind, "args": args[0]}), flush=True)
            signal.alarm(CASE_SECONDS)  # a spin inside libhdf5 kills the worker (SIGALRM)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(args)
            with open(path, "rb") as f:
                same = hashlib.sha256(f.read()).hexdigest() == digest
            text = out.getvalue() + err.getvalue()
            ok = rc in (0, 2, 3) and "Traceback" not in text and same
            if rc == 3:
                ok = ok and len([ln for ln in err.getvalue().splitlines() if ln.strip()]) == 1
            print(json.dumps({"done": i, "rc": rc, "ok": ok, "same": same,
                              "err": err.getvalue()[-400:]}), flush=True)
        i += 1
print(json.dumps({"cases": i}), flush=True)
"""


def _seeds(tmp_path) -> dict[str, str]:
    h, y, m = make_data(C=3, d=4, n=6)
    h5 = tmp_path / "seed.h5"
    with h5py.File(h5, "w") as f:
        f["labels"] = y
        f.attrs["class_names"] = ["a", "b", "c"]
        for ep in (1, 2):
            g = f.create_group(f"epoch_{ep}")
            g["features"] = h * ep
            g["weights"] = m
            g.attrs["epoch"] = ep
            g.attrs["meta"] = "json:" + json.dumps({"lr": 0.1})
    gz = tmp_path / "seedz.h5"
    with h5py.File(gz, "w") as f:
        f["labels"] = y
        f.create_dataset("features", data=h, chunks=(6, 4), compression="gzip")
    npz = tmp_path / "seed.npz"
    np.savez(npz, features=h, labels=y, weights=m, meta=np.array(json.dumps({"epoch": 3})))
    npzc = tmp_path / "seedc.npz"
    np.savez_compressed(npzc, **{"epoch_1/features": h, "labels": y})
    journaled = tmp_path / "seedj.h5"  # a writer killed inside a commit: a journal at its end
    killed_in_commit(journaled)
    return {p.name: str(p) for p in (h5, gz, npz, npzc, journaled)}


def test_mutated_dumps_never_crash_hang_or_change(tmp_path):
    seeds = _seeds(tmp_path)
    work = tmp_path / "cases"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["NCINSPECT_HDF5_PROBE_SECONDS"] = "5"  # metadata that spins libhdf5: exit 3 after 5 s
    records, native_crashes, first, left = [], [], 0, SECONDS
    while left > 1:
        args = [sys.executable, "-c", _WORKER, json.dumps(seeds), str(work), str(left), str(SEED)]
        start = time.time()
        try:
            proc = subprocess.run(
                [*args, str(first)],
                capture_output=True,
                text=True,
                timeout=left + 120,
                env=env,
                cwd=tmp_path,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
            lines = (out or "").splitlines()
            raise AssertionError(f"a case hangs: {lines[-1] if lines else 'the first'}") from None
        left -= time.time() - start
        got = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
        records += got
        if proc.returncode == 0:
            break
        # killed by a signal inside the HDF5 C library (a corrupt file it does not survive,
        # or a case spinning there past its alarm): recorded, the run goes on with the next
        assert proc.returncode < 0, proc.stderr[-2000:]
        last = [r for r in got if "start" in r]
        assert last, proc.stderr[-2000:]
        native_crashes.append({**last[-1], "signal": -proc.returncode})
        first = last[-1]["start"] + 1
    bad = [r for r in records if "done" in r and not r["ok"]]
    assert not bad, [(r["done"], r["rc"], r["err"]) for r in bad[:8]]
    cases = len({r["done"] for r in records if "done" in r})
    assert cases >= 10, cases
    assert all(s in {r.get("seed") for r in records} for s in seeds)
    if native_crashes:
        msg = (
            f"{len(native_crashes)} of {cases} cases crash or spin in libhdf5: {native_crashes[:3]}"
        )
        if os.environ.get("NCINSPECT_FUZZ_STRICT"):
            raise AssertionError(msg)
        warnings.warn(msg, stacklevel=1)


def test_an_output_path_never_replaces_the_input(tmp_path, monkeypatch):
    from ncinspect.cli import main

    from .helpers import file_digest

    seeds = _seeds(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name, path in seeds.items():
        digest = file_digest(path)
        for args in (
            ["report", path, "--json", path],
            ["report", path, "--csv", f"./{name}"],
            ["report", f"./{name}", "--json", os.path.abspath(path)],
            ["check", path, "--max", "nc1=10", "--format", "json", "-o", path],
        ):
            rc = main(args)
            assert rc in (2, 3), (args, rc)
            assert file_digest(path) == digest, args


# --------------------------------------------------------------------------------------------
# Issue 22 surfaces (round three). Seeded, in-process, each bounded by NEW_SECONDS (default
# 8; NCINSPECT_FUZZ_SECONDS raises it too). Every case: exit 0, 2 or 3, one error line at
# most, no traceback, the input unchanged, and nothing unpickled.
# --------------------------------------------------------------------------------------------

NEW_SECONDS = max(8.0, SECONDS / 5)


class _Alarm:
    """A case that runs past ``seconds`` raises TimeoutError (exit 4: the test fails)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        import signal

        def hang(signum, frame):
            raise TimeoutError(f"a case ran past {self.seconds} s")

        self._old = signal.signal(signal.SIGALRM, hang)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        import signal

        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old)


def _case(capsys, args, path=None, seconds=30.0, ok=(0, 2, 3)):
    from ncinspect.cli import main

    from .helpers import file_digest

    before = file_digest(path) if path else None
    with _Alarm(seconds):
        rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert rc in ok, (args[:3], rc, err[-600:])
    assert "Traceback" not in err and "internal error" not in err, (args[:3], err[-600:])
    if rc == 3:
        assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, (args[:3], err)
    if path:
        assert file_digest(path) == before, args[:3]
    return rc, out, err


def _safetensors_seed(tmp_path) -> bytes:
    import safetensors.numpy

    h, y, m = make_data(C=3, d=4, n=6)
    path = tmp_path / "seed.safetensors"
    safetensors.numpy.save_file(
        {"features": h, "labels": y, "weights": m, "epoch_2/features": h + 1.0},
        str(path),
        metadata={"epoch": "1", "split": "train"},
    )
    return path.read_bytes()


def _mutate_header(rng, data: bytes) -> tuple[str, bytes]:
    """A safetensors file with its JSON header edited: values swapped for others of any
    type, numbers pushed to extremes, keys renamed, bytes flipped, the length field or the
    data section changed (never nested deeply: that class is issue 22 item 6)."""
    n = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8 : 8 + n]), data[8 + n :]
    kind = int(rng.integers(0, 7))
    names = [k for k in header if k != "__metadata__"]
    name = names[int(rng.integers(len(names)))]
    entry = header[name]
    extremes = [-1, 0, 1, 2**31, 2**63, 2**64 + 5, 10**30, 3.5, "7", None, [], {}]
    if kind == 0:
        entry["dtype"] = str(rng.choice(["F8", "I64", "U64", "BOOL", "F4x", "", "object", 5]))
    elif kind == 1:
        shape = list(entry["shape"])
        if shape:
            shape[int(rng.integers(len(shape)))] = extremes[int(rng.integers(len(extremes)))]
        entry["shape"] = shape if rng.integers(2) else shape + [2]
    elif kind == 2:
        a, b = entry["data_offsets"]
        pick = extremes[int(rng.integers(len(extremes)))]
        entry["data_offsets"] = [pick, b] if rng.integers(2) else [a, pick]
    elif kind == 3:
        spellings = ["/features", "features/", "labels\x00", "W", "a/b/c", "features\u200b"]
        spellings += ["../features", "a/../features", " labels", "e\u0301/features", "fc/weight"]
        header[str(rng.choice(spellings))] = entry
        if rng.integers(2):
            del header[name]
    elif kind == 4:
        header["__metadata__"] = {
            "epoch": str(rng.choice(["x", "1e999", "-5", "9" * 400])),
            "split": str(rng.choice(["=1+1", "\x1b[2J", "[red]x", "a" * 3000])),
        }
    elif kind == 5:
        raw = bytearray(json.dumps(header).encode())
        for _ in range(int(rng.integers(1, 4))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(0, 256))
        return "header bytes", len(raw).to_bytes(8, "little") + bytes(raw) + body
    else:
        cut = int(rng.integers(0, len(body) + 1))
        text = json.dumps(header).encode()
        return "body cut", len(text).to_bytes(8, "little") + text + body[:cut]
    text = json.dumps(header).encode()
    if rng.integers(4) == 0:
        text += b" " * int(rng.integers(0, 9))  # padding the length field must cover
    return f"edit {kind}", len(text).to_bytes(8, "little") + text + body


def test_safetensors_header_mutations(tmp_path, capsys):
    seed = _safetensors_seed(tmp_path)
    rng = np.random.default_rng(SEED)
    deadline, cases = time.time() + NEW_SECONDS, 0
    while time.time() < deadline or cases < 20:
        what, data = _mutate_header(rng, seed)
        path = tmp_path / f"case{cases}.safetensors"
        path.write_bytes(data)
        for command in ("report", "info"):
            _case(capsys, [command, path], path)
        cases += 1
    assert cases >= 20


class _Unpickled:
    """Unpickling this creates a directory: proof that a file was (not) unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _random_object(rng, marker, depth=0):
    kind = int(rng.integers(0, 7 if depth < 3 else 4))
    if kind == 0:
        return float(rng.standard_normal())
    if kind == 1:
        return "".join(chr(int(c)) for c in rng.integers(32, 0x2FF, int(rng.integers(0, 12))))
    if kind == 2:
        return rng.standard_normal(int(rng.integers(0, 5)))
    if kind == 3:
        return _Unpickled(marker)
    if kind == 4:
        return [_random_object(rng, marker, depth + 1) for _ in range(int(rng.integers(0, 4)))]
    if kind == 5:
        return {f"k{i}": _random_object(rng, marker, depth + 1) for i in range(3)}
    return (depth, _random_object(rng, marker, depth + 1))


def test_pickles_of_every_protocol_are_refused_unopened(tmp_path, capsys):
    """Random objects pickled with protocols 0-5 (bare, as torch.save writes them in both
    its formats, as a zip member of any name, cut short as a killed pickle.dump leaves them,
    under .pt/.ckpt/.pth/.pkl/.h5/.npz names): exit 3 naming a pickle."""
    import pickle
    import zipfile

    import torch

    marker = str(tmp_path / "unpickled")
    rng = np.random.default_rng(SEED + 1)
    deadline, cases = time.time() + NEW_SECONDS, 0
    suffixes = [".pt", ".ckpt", ".pth", ".pkl", ".h5", ".npz", ""]
    while time.time() < deadline or cases < 18:
        protocol = cases % (pickle.HIGHEST_PROTOCOL + 1)
        obj = {"features": _random_object(rng, marker), "x": _random_object(rng, marker)}
        path = tmp_path / f"case{cases}{suffixes[int(rng.integers(len(suffixes)))]}"
        style = cases // (pickle.HIGHEST_PROTOCOL + 1) % 5
        if style == 0:
            path.write_bytes(pickle.dumps(obj, protocol=protocol))
        elif style in (1, 3):  # torch.save's zip (archive/data.pkl), or a pickle member of
            # any name in a zip (data.pkl renamed, a zip of .pkl files)
            member = "archive/data.pkl" if style == 1 else str(rng.choice(["m.pkl", "a/b", "w"]))
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("archive/version", "3\n")
                zf.writestr(member, pickle.dumps(obj, protocol=protocol))
        elif style == 4:  # a pickle.dump killed: cut anywhere from 5 bytes on
            blob = pickle.dumps(obj, protocol=protocol)
            path.write_bytes(blob[: int(rng.integers(min(5, len(blob) - 1), len(blob)))])
        else:
            state = {"features": torch.randn(4, 3), "labels": torch.arange(4)}
            legacy = bool(rng.integers(2))
            torch.save(
                state, path, pickle_protocol=protocol, _use_new_zipfile_serialization=not legacy
            )
        rc, _, err = _case(capsys, ["report", path], path)
        assert rc == 3 and "pickle" in err and "never unpickles" in err, (protocol, style, err)
        cases += 1
    assert not os.path.exists(marker)


_HOSTILE = [
    "<script>alert(1)</script>",
    "[bold red]x[/bold red]",
    "\x1b[2J\x1b[31mred",
    '=HYPERLINK("http://x")',
    "+1+2",
    "-cmd",
    "@SUM(A1)",
    "\tlead",
    "a\r\nb",
    "::error::forged",
    "a]]>b<![CDATA[",
    "\u202eevil",
    "\x00nul\x07bell",
    "%0A%0D",
    'name,with,commas"and quotes',
    # round six: legacy workflow commands anywhere in a line, emoji codes, formulas after a
    # separator inside a cell
    "x ##[add-mask]secret",
    "#\u200b#[stop-commands]tok",
    ":thumbs_up:",
    "x;=1+1;",
    "y\t@SUM(A1)",
]


def _hostile_run(path, rng):
    """A two-epoch dump whose class names, split and layer metadata are hostile."""
    C = 3
    names = [str(x) for x in rng.choice(_HOSTILE, size=C, replace=False)]
    h, y, m = make_data(C=C, d=4, n=12)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f["class_names"] = np.array([n.encode("utf-8", "surrogateescape") for n in names])
        for e in (0, 5):
            g = f.create_group(f"epoch_{e}")
            g["features"] = h * (1.0 + e)
            g["weights"] = m
            split = str(rng.choice(_HOSTILE))
            # h5py cannot store a NUL in a variable-length string: such a name as bytes
            g.attrs["split"] = np.bytes_(split.encode("utf-8")) if "\x00" in split else split


def test_writers_fed_hostile_names(tmp_path, capsys):
    """JUnit stays well-formed XML, GitHub annotations stay one line each, CSV keeps its
    rows, and nothing printed to the terminal holds a raw escape or control character.
    (CSV formula neutralisation and HTML rendering of huge names are issue 22 items 2 and
    5: tested with those fixes.)"""
    import csv
    import xml.etree.ElementTree as ET

    rng = np.random.default_rng(SEED + 2)
    deadline, cases = time.time() + NEW_SECONDS, 0
    while time.time() < deadline or cases < 4:
        path = tmp_path / f"run{cases}.h5"
        _hostile_run(path, rng)
        junit, gh, table = (tmp_path / f"c{cases}.{x}" for x in ("xml", "txt", "csv"))
        rc, out, err = _case(capsys, ["report", path, "--csv", table, "--per-class"], path)
        assert rc == 0, err
        for text in (out, err):  # the terminal (files are data: they keep the names)
            assert "\x1b" not in text and "\x00" not in text and "\u202e" not in text
        with open(table, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        assert len({len(r) for r in rows}) == 1 and len(rows) >= 3  # no row split or merged
        for part in re.split("[;\t\r\n]", table.read_text(encoding="utf-8")):
            # a cell as a ";" or tab reader that ignores quotes sees it: no formula starts
            part = part.lstrip('"')
            assert not (part[:1] in ("=", "+", "@") or part[:1] == "-" and not _number(part))
        check = ["check", path, "--no-config", "--max", "nc1=1e-9", "--min", "accuracy_ncc=2"]
        rc, out, err = _case(capsys, [*check, "--format", "junit", "-o", junit], path, ok=(0, 1))
        ET.parse(junit)  # well-formed
        assert "\x1b" not in junit.read_text(encoding="utf-8")
        rc, out, err = _case(capsys, [*check, "--format", "github", "-o", gh], path, ok=(0, 1))
        for text in (gh.read_text(encoding="utf-8"), out, junit.read_text(encoding="utf-8")):
            for line in text.splitlines():  # a name never starts a workflow command
                assert not line.startswith("::error::forged"), line
                assert "\r" not in line and "\x1b" not in line
                # nor holds a legacy one anywhere (zero-width characters are skipped)
                assert "##[" not in re.sub("[\u200b\u200c\u200d\u2060\ufeff]", "", line)
                assert "\U0001f44d" not in line  # :thumbs_up: shown as written
        cases += 1


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_integer_options_at_their_bounds(tmp_path, capsys):
    """Every integer option of report/plot/check/theory (but --bootstrap: issue 22 item 7)
    given values out of range, not integers or huge: a usage error or a normal run, in
    seconds, never a traceback or a hang."""
    import click

    from ncinspect.cli import cli

    h, y, m = make_data(C=3, d=4, n=10)
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for e in (0, 5):
            f[f"epoch_{e}/features"], f[f"epoch_{e}/weights"] = h * (1 + e), m
    ctx = click.Context(cli)
    values = ["-1", "0", "1.5", "abc", "", str(2**64 + 5), "1e9", "0x10"]
    extra = {
        "plot": ["-o", tmp_path / "figs", "-k", "trajectory"],
        "check": ["--no-config", "--max", "nc1=10"],
    }
    checked = 0
    for command in ("report", "plot", "check", "theory"):
        cmd = cli.get_command(ctx, command)
        for p in cmd.params:
            if not isinstance(p.type, (click.IntRange, click.types.IntParamType)):
                continue
            if p.opts[-1] == "--bootstrap":
                continue
            for v in values:
                if command == "plot" and v not in ("-1", "abc", str(2**64 + 5)):
                    continue  # a figure per value would take minutes
                args = [command, path, *extra.get(command, []), p.opts[-1], v]
                rc, _, err = _case(capsys, args, path, seconds=60, ok=(0, 1, 2, 3))
                try:
                    n = int(v)
                except ValueError:
                    n = None
                lo = p.type.min if isinstance(p.type, click.IntRange) else None
                if n is None or (lo is not None and n < lo):
                    assert rc == 2, (args[3:], rc, err[-300:])
                checked += 1
    assert checked >= 30
