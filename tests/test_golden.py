"""JSON output on every sample dump is unchanged by refactoring.

``tests/golden/`` holds the JSON written by the release before the 0.2
re-housing (``report`` with default options, ``report --per-class --center
samples`` and ``theory``) for each dump in ``sample_data/``. The first test
demands byte identity (the re-housing must not move a single bit); the second
compares every number to 1e-12 relative, the standard an exact speed-up must
meet when it reorders float64 sums.

``tests/golden/identity/`` holds, for the cases where an exact speed-up moved last bits
(within 1e-12 of the release values), the JSON of the current code: the byte-identity test
compares against it when present, the 1e-12 test always against the release values.

Last bits also depend on the BLAS kernel OpenBLAS picks for the processor (an AVX-512
kernel and an AVX2 "Haswell" one round differently). ``identity/<architecture>/`` (the name
threadpoolctl reports) holds the JSON of the unchanged 0.2 code on that kernel, written by
``python tests/test_golden.py --write-identity`` from an untouched checkout; it is preferred
when present. ``identity/SkylakeX/`` was written so at 94637fa on an Intel Xeon (AVX-512):
every value the older references of that kernel (``identity/*.json``, written on one at
3efa247) hold is byte for byte the same in it; what differs is only the keys added since
(``nc1_cdnv_directional``, the ``layers`` section), which ``tests/golden/add_keys.py`` had
inserted with the bits of the machine it ran on (a Haswell one), and the regression cases,
which had no reference of that kernel. On a kernel with no references of its own, a case
must match one of the known kernels' byte for byte (:func:`references`).

A few outputs are differences of nearly equal O(1) numbers (the SELI weight error ~1e-8,
the theory's layer-norm differences): across kernels they agree to 1e-12 of the numbers
they are differences of, not of themselves; ``CANCELLING`` gives their tolerance, relative
to the value.

They depend on the number of BLAS threads too: ``theory`` runs its products on BLAS's own
threads, and OpenBLAS splits a product's sums by thread count. Every case therefore runs
with BLAS on :data:`BLAS_THREADS` threads (as the identity files were written), whatever
``OMP_NUM_THREADS`` or the machine's core count says.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from ncinspect.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
IDENTITY = GOLDEN / "identity"

#: outputs that cancel (see the module docstring) -> relative tolerance across BLAS kernels
CANCELLING = {"seli_error_weights": 1e-7, "layer_norm_differences": 1e-9, "measured": 1e-9}
BLAS_THREADS = 2  #: BLAS threads of every case (the identity files were written so)


def blas_architecture() -> str:
    """The OpenBLAS kernel numpy runs on this processor ("Haswell", "SkylakeX", ...)."""
    import numpy as np  # noqa: F401  (loads the BLAS threadpoolctl inspects)
    from threadpoolctl import threadpool_info

    archs = [i.get("architecture") for i in threadpool_info() if i.get("user_api") == "blas"]
    return str(archs[0]) if archs and archs[0] else "unknown"


def identity_file(name: str) -> Path:
    """The byte-identity reference of a case on this machine's BLAS kernel."""
    for basis in (IDENTITY / blas_architecture(), IDENTITY, GOLDEN):
        if (basis / f"{name}.json").exists():
            return basis / f"{name}.json"
    raise FileNotFoundError(name)


def known_kernels() -> list[str]:
    """The BLAS kernels with references of their own (``identity/<architecture>/``)."""
    return sorted(p.name for p in IDENTITY.iterdir() if p.is_dir())


def references(name: str) -> list[Path]:
    """What the byte-identity test compares a case with: the reference of this machine's
    kernel when ``identity/<architecture>/`` exists; on a kernel without one (whose last
    bits nobody has recorded), the reference of every kernel that has one, any of which it
    must match byte for byte (a kernel of another name that rounds as a known one, e.g. a
    newer AVX-512 processor, passes; one that rounds otherwise fails, saying to write its
    references with ``--write-identity``)."""
    if (IDENTITY / blas_architecture()).is_dir():
        return [identity_file(name)]
    found = [IDENTITY / k / f"{name}.json" for k in known_kernels()]
    return [p for p in found if p.exists()] or [identity_file(name)]


CASES = []
for dump in ("synthetic", "trained_wd", "trained_wd0", "regression"):
    CASES.append((f"report_{dump}", ["report", f"sample_data/{dump}.h5"]))
    CASES.append(
        (
            f"report_{dump}_pc",
            ["report", f"sample_data/{dump}.h5", "--per-class", "--center", "samples"],
        )
    )
for dump in ("trained_wd", "trained_wd0"):
    CASES.append((f"theory_{dump}", ["theory", f"sample_data/{dump}.h5"]))


def _run(args, tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out.json"
    extra = ["-q"] if args[0] == "report" else []
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        assert main([*args, "--json", str(out), *extra]) == 0
    return out.read_text()


def _normalise(text: str) -> str:
    data = json.loads(text)
    data.pop("ncinspect_version", None)
    return json.dumps(data, sort_keys=True, indent=2)


@pytest.mark.parametrize("name,args", CASES, ids=[c[0] for c in CASES])
def test_json_byte_identical(name, args, tmp_path, monkeypatch):
    got = _normalise(_run(args, tmp_path, monkeypatch))
    wants = references(name)
    if len(wants) == 1:
        assert got == _normalise(wants[0].read_text())
        return
    assert any(got == _normalise(w.read_text()) for w in wants), (
        f"the BLAS kernel {blas_architecture()!r} has no references of its own and matches "
        f"none of {known_kernels()}: write them from an untouched checkout with "
        "'python tests/test_golden.py --write-identity' (test_json_values_within_1e12 holds "
        "the values to the release's meanwhile)"
    )


def _compare(got, want, where="$"):
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            _compare(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _compare(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert isinstance(got, (int, float)), where
        tol = max(CANCELLING.get(k, 1e-12) for k in _keys(where))
        assert math.isclose(got, want, rel_tol=tol, abs_tol=1e-300), (where, got, want)
    else:
        assert got == want, (where, got, want)


def _keys(where: str) -> list[str]:
    """The object keys on a JSON path ("$.snapshots[4].metrics.nc1" -> [..., "metrics", "nc1"])."""
    return [part.split("[")[0] for part in where.split(".")[1:]] or ["$"]


@pytest.mark.parametrize("name,args", CASES, ids=[c[0] for c in CASES])
def test_json_values_within_1e12(name, args, tmp_path, monkeypatch):
    got = json.loads(_run(args, tmp_path, monkeypatch))
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    got.pop("ncinspect_version", None)
    want.pop("ncinspect_version", None)
    _compare(got, want)


if __name__ == "__main__":  # write identity/<architecture>/ from an untouched checkout
    import sys
    import tempfile

    if sys.argv[1:] != ["--write-identity"]:
        raise SystemExit("usage: python tests/test_golden.py --write-identity")
    target = IDENTITY / blas_architecture()
    target.mkdir(parents=True, exist_ok=True)
    for name, args in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.json"
            extra = ["-q"] if args[0] == "report" else []
            with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
                assert main([*args, "--json", str(out), *extra]) == 0
            (target / f"{name}.json").write_text(out.read_text())
    print(f"wrote {len(CASES)} files to {target}")
