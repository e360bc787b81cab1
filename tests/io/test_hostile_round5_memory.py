"""Issue 22 item 9 at the issue's own shape: ``report --memory-limit 424MiB`` on a float32
dump of d = 1,000,000, N = 50, C = 4 (0.2 peaked at 747 MB, 1.8x). The class-level float64
arrays alone take more than 424 MiB there, so the limit is refused up front, naming the
limit that would do; that limit is then a promise too: the run under it peaks within 1.1x.
Peaks are the kernel's high-water mark of the report process, read by a small wrapper
process that starts it (``tests/helpers.py``'s ``peak_rss``): a process started
straight from the test runner would count the runner's own resident memory, which Linux
carries into its high-water mark across the fork and exec (1.2 GB in a full CI run)."""

from __future__ import annotations

import re
import sys

import h5py
import numpy as np
import pytest

from ..helpers import peak_rss

CLI = "import sys; from ncinspect.cli import main; sys.exit(main())"


@pytest.mark.slow
def test_the_issues_shape_is_refused_or_held_within_1_1x(tmp_path):
    d, n, C = 1_000_000, 50, 4
    path = tmp_path / "wide.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("features", shape=(n, d), dtype="f4", chunks=(1, d))
        for i in range(n):
            ds[i] = rng.standard_normal(d, dtype=np.float32)
        f["labels"] = np.arange(n) % C
        f["weights"] = rng.standard_normal((C, d), dtype=np.float32)
    out = tmp_path / "out.json"

    def report(limit_mib: int):
        args = [
            sys.executable,
            "-c",
            CLI,
            "report",
            str(path),
            "--memory-limit",
            f"{limit_mib}MiB",
            "-q",
            "--json",
            str(out),
        ]
        return peak_rss(args, tmp_path)

    rc, peak, err = report(424)
    assert peak <= 1.1 * (424 << 20), peak / 2**20
    if rc == 0:
        return
    assert rc == 3 and len(err.strip().splitlines()) == 1, err
    wanted = re.search(r"give --memory-limit (\d+)MiB or more", err)
    assert wanted, err
    limit = int(wanted.group(1))
    rc, peak, err = report(limit)
    assert rc == 0, err
    assert peak <= 1.1 * (limit << 20), (limit, peak / 2**20)
    import json

    (snap,) = json.loads(out.read_text())["snapshots"]
    assert snap["n_samples"] == n and snap["metrics"]["nc1"] is not None
