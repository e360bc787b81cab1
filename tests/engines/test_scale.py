"""Scale: out-of-core streaming in bounded memory, many classes, progress reporting."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.cli.progress import RowProgress
from ncinspect.engines.local import plan_chunk_rows
from ncinspect.errors import ResourceLimitError
from ncinspect.stats.passes import SecondPass, block_rows

from ..helpers import make_data

_HWM = """
import re as _re
with open("/proc/self/status") as _f:
    print("VmHWM", _re.search(r"VmHWM:\\s+(\\d+)", _f.read()).group(1))
"""


def _peak_rss_mb(code: str, **env: str) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter: its peak RSS in MB and its stdout.

    The peak is the child's own VmHWM (``ru_maxrss`` would include the forked parent).
    """
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc (Linux) to read the peak RSS")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + _HWM],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    return int(lines[-1].split()[1]) / 1024, "\n".join(lines[:-1])


def _write_blocks(path, n, d, C, *, seed=0, step=20_000):
    """A float32 dump written block by block (never all in memory); returns the means."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((C, d)).astype(np.float32)
    labels = rng.integers(0, C, size=n)
    with ncinspect.DumpWriter(path, "w") as w:
        w.write("labels", labels)
        snap = w.snapshot("/")
        for a in range(0, n, step):
            y = labels[a : a + step]
            snap.append(
                features=means[y] + 0.5 * rng.standard_normal((y.size, d), dtype=np.float32)
            )
        snap.write(weights=means)
    return means


@pytest.mark.slow
def test_out_of_core_200mb_bounded_rss(tmp_path):
    path = tmp_path / "big.h5"
    n, d, C = 200_000, 256, 10  # 205 MB of float32 features
    _write_blocks(path, n, d, C)
    size_mb = os.path.getsize(path) / 1e6
    assert size_mb > 200
    rss, out = _peak_rss_mb(f"""
        import json, ncinspect
        r = ncinspect.analyze_file({str(path)!r}, memory_limit=16 << 20)[0]
        print(json.dumps(r.metrics))
    """)
    # the interpreter with numpy/h5py/scipy is ~60-90 MB; the chunks add ~16 MB, not 200
    assert rss < 0.6 * size_mb, f"peak RSS {rss:.0f} MB for a {size_mb:.0f} MB file"
    streamed = json.loads(out.strip().splitlines()[-1])
    # the same numbers (to round-off) with 8x larger chunks
    other = ncinspect.analyze_file(path, memory_limit=128 << 20)[0].metrics
    for key, value in streamed.items():
        if isinstance(value, float):
            assert value == pytest.approx(other[key], rel=1e-10, abs=1e-15), key
        else:
            assert value == other[key], key


def test_memory_limit_sets_chunk_rows():
    small = plan_chunk_rows(256, 10, memory_limit=16 << 20)
    assert small < plan_chunk_rows(256, 10) and small * (24 * 256 + 8 * 38) <= 16 << 20
    # a limit is a bound: chunks go down to one row, and a budget too small is refused
    wide = plan_chunk_rows(30000, 4, memory_limit=24 << 20, itemsize=4, n_samples=256)
    assert 1 <= wide < 64
    with pytest.raises(ResourceLimitError, match="needs at least"):
        plan_chunk_rows(10**6, 4, memory_limit=16 << 20, itemsize=4, n_samples=256)


@pytest.mark.slow
def test_many_classes_no_c_by_c_matrix(tmp_path):
    """C = 20,000, d = 256: no C x C (3.2 GB) or d x d matrix; peak RSS stays small."""
    rss, out = _peak_rss_mb(
        """
        import json
        import numpy as np
        import ncinspect
        rng = np.random.default_rng(0)
        C, d = 20_000, 256
        means = rng.standard_normal((C, d))
        y = np.r_[np.arange(C), np.arange(2000)]  # pass 2 alone is N d C = 1e11 mult-adds
        h = means[y] + 0.1 * rng.standard_normal((y.size, d))
        r = ncinspect.analyze(h, y)
        print(json.dumps({"m": r.metrics, "w": r.warnings, "basis": r.arrays.basis.shape}))
    """,
        OMP_NUM_THREADS="1",
    )  # one BLAS thread: no oversubscription on a shared CI box
    res = json.loads(out.strip().splitlines()[-1])
    assert rss < 1200, f"peak RSS {rss:.0f} MB; a C x C float64 matrix alone is 3200 MB"
    m = res["m"]
    assert res["basis"] == [256, 256]  # r = min(C - 1, d) directions
    assert m["accuracy_ncc"] == 1.0 and 0 < m["nc1"] < 0.1
    assert m["nc1_cdnv"] is not None and m["nc1_cdnv"] > 0
    assert m["etf_error_means"] is not None and 0 < m["nc2_equiangular_means"] < 1
    assert any("C > d + 1" in w for w in res["w"])


def test_second_pass_blocks_do_not_change_results(monkeypatch):
    """Pass 2 runs in fixed blocks; any block size gives the same statistics (to round-off)."""
    import ncinspect.stats.kernel as kernel
    from ncinspect.metrics import between_class_geometry
    from ncinspect.stats.passes import FirstPass

    h, y, m = make_data(C=6, d=20, n=300, offset=50.0)
    first = FirstPass.of_chunk(h, y, 6)
    geom = between_class_geometry(first, weights=m)
    ref = SecondPass.of_chunk(geom, h, y)
    monkeypatch.setattr(kernel, "BLOCK_BYTES", 8 * (20 + 12) * 7)  # 32-row floor
    assert block_rows(20, 6) == 32
    small = SecondPass.of_chunk(geom, h, y)
    np.testing.assert_allclose(small.proj_sq, ref.proj_sq, rtol=1e-12)
    np.testing.assert_allclose(small.class_sq, ref.class_sq, rtol=1e-12)
    np.testing.assert_array_equal(small.agree, ref.agree)
    assert small.true_out.mean == pytest.approx(ref.true_out.mean, rel=1e-12)
    assert small.wrong_out.m2 == pytest.approx(ref.wrong_out.m2, rel=1e-12)


def test_float32_chunks_equal_float64_copies():
    h, y, m = make_data(C=4, d=12, n=50)
    h32 = h.astype(np.float32)
    a = ncinspect.analyze(h32, y, weights=m, chunk_rows=37)
    b = ncinspect.analyze(h32.astype(np.float64), y, weights=m, chunk_rows=37)
    assert a.metrics == b.metrics  # converting in blocks is exact: identical numbers


# ------------------------------------------------------------------------------------------
# progress
# ------------------------------------------------------------------------------------------
def test_progress_counts_both_passes_and_draws(tmp_path):
    from rich.console import Console

    h, y, m = make_data(C=3, d=8, n=100)
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = h.astype(np.float32), y, m
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with RowProgress(console=console, delay=0.0) as bar:
        ncinspect.analyze_file(path, chunk_rows=50, progress=bar)
        assert bar.total_rows == 2 * 300 and bar.done == 600
        assert bar.row_bytes == 8 * 4  # float32 rows of d = 8
    text = buf.getvalue()
    assert "rows" in text and "MB/s" in text and "600" in text


def test_progress_counts_train_partner_first_pass(tmp_path):
    h, y, m = make_data(C=3, d=8, n=20)
    path = tmp_path / "split.h5"
    with h5py.File(path, "w") as f:
        for split, n in (("train", 60), ("test", 30)):
            g = f.create_group(split)
            g["features"], g["labels"] = h[:n], y[:n]
            g.attrs["split"] = split
    bar = RowProgress(enabled=False)
    ncinspect.analyze_file(path, snapshot="/test", progress=bar, ncc_centres="train")
    assert bar.total_rows == bar.done == 2 * 30 + 60  # test twice, train means once


@pytest.mark.parametrize(
    ("tty", "quiet", "enabled"), [(False, False, False), (True, True, False), (True, False, True)]
)
def test_progress_hidden_when_quiet_or_not_a_terminal(
    tmp_path, monkeypatch, capsys, tty, quiet, enabled
):
    import ncinspect.cli.progress as progress_mod

    h, y, m = make_data(C=3, d=8, n=20)
    path = tmp_path / "q.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"] = h, y
    made = []

    class Recording(RowProgress):
        def __init__(self, **kwargs):
            made.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(progress_mod, "RowProgress", Recording)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    argv = ["report", str(path), "--json", "-"] + (["--quiet"] if quiet else [])
    assert main(argv) == 0
    assert [kw.get("enabled", True) for kw in made] == [enabled]  # the CLI's decision
    if not enabled:
        assert capsys.readouterr().err == ""


def test_default_chunks_shrink_only_when_memory_is_short(monkeypatch):
    import ncinspect.engines.local as an

    monkeypatch.setattr(an, "_available_memory", lambda: 64 << 30)
    roomy = plan_chunk_rows(512, 100)
    monkeypatch.setattr(an, "_available_memory", lambda: None)
    assert plan_chunk_rows(512, 100) == roomy  # the fixed default: never grows with memory
    monkeypatch.setattr(an, "_available_memory", lambda: 256 << 20)
    short = plan_chunk_rows(512, 100)
    assert short < roomy and short * (24 * 512 + 8 * 308) <= 64 << 20
    # explicit: a bound on the whole run (20% of it unplanned), so less than the default
    assert 0.7 * roomy < plan_chunk_rows(512, 100, memory_limit=256 << 20) <= 0.8 * roomy
