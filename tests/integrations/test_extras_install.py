"""Each framework extra alone is enough for its documented example (issue 23 item 1).

For each extra: a fresh virtual environment (no system site packages, no PYTHONPATH), torch
pinned first as the README says (``pip install torch==2.13.0``: any other torch request would
download a CUDA build), then ``pip install '<copy of the repo>[<extra>]'`` and nothing else;
then every runnable example of docs/measure.md that the extra is for runs in that environment.
CI installs every extra at once and could not see a missing dependency; this test can.

Nothing is written outside ``tmp_path``: the repo is copied there before pip builds it (a
build writes ``build/`` and ``*.egg-info`` beside the sources), pip's cache, the temporary
folder, matplotlib's and every XDG cache point into ``tmp_path``; pip's cache there starts
empty, so nothing of the user's is read or written (the wheels come from the configured index
or find-links, torch 2.13.0 from the local wheel). Measured on the shared 2-core machine with
``--no-compile`` (printed with ``-s``; the spread is the machine's load): torch 17-97 s, then
``[torch]`` 14-73 s, ``[lightning]`` 157 s, ``[transformers]`` 108-178 s; without
``--no-compile`` and under heavier load torch took 218-291 s and ``[lightning]`` 297 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.test_docs_measure import BLOCKS

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))

#: extra -> (what its examples import, a module the extra must NOT bring in)
EXTRAS = {
    "torch": ("torch", "lightning"),
    "lightning": ("lightning", "transformers"),
    "transformers": ("transformers", "lightning"),
}


def _examples(extra: str) -> list[tuple[int, str]]:
    """The runnable docs/measure.md blocks of ``extra``: those importing its framework and no
    other framework."""
    others = [name for name in EXTRAS if name not in ("torch", extra)]
    out = []
    for line, code, run in BLOCKS:
        if not run or any(f"import {o}" in code or f"from {o}" in code for o in others):
            continue
        if (
            extra == "torch"
            or f"import {extra}" in code
            or f"from {extra}" in code
            or (f"integrations.{extra}" in code)
        ):
            out.append((line, code))
    return out


def _clean_env(tmp_path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    for name, sub in (
        ("PIP_CACHE_DIR", "pip-cache"),
        ("TMPDIR", "tmp"),
        ("MPLCONFIGDIR", "mpl"),
        ("XDG_CACHE_HOME", "cache"),
        ("TORCHINDUCTOR_CACHE_DIR", "inductor"),
        ("HF_HOME", "hf"),
        ("WANDB_DIR", "wandb"),
    ):
        path = tmp_path / sub
        path.mkdir(exist_ok=True)
        env[name] = str(path)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["WANDB_MODE"] = "disabled"
    return env


def _run(cmd, env, cwd, timeout=900):
    proc = subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return proc.stdout


def _copy_repo(dest) -> str:
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(
        os.path.join(ROOT, "ncinspect"),
        src / "ncinspect",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return str(src)


@pytest.mark.slow
@pytest.mark.parametrize("extra", ["torch", "lightning", "transformers"])
def test_extra_alone_runs_its_documented_example(extra, tmp_path):
    examples = _examples(extra)
    if extra != "transformers":  # the Transformers section is optional on this page
        assert examples, f"docs/measure.md has no example for the {extra} extra"
    else:  # until it has one, the extra's torch path (Meter on tensors, measure) runs
        examples = examples or _examples("torch")
    env = _clean_env(tmp_path)
    src = _copy_repo(tmp_path)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env, tmp_path)
    py = str(venv / "bin" / "python")
    t0 = time.perf_counter()
    # --no-compile: no .pyc for the thousands of files of torch (Python compiles what the
    # example imports); the installs are what the README says otherwise
    _run([py, "-m", "pip", "install", "-q", "--no-compile", "torch==2.13.0"], env, tmp_path)
    t1 = time.perf_counter()
    _run([py, "-m", "pip", "install", "-q", "--no-compile", f"{src}[{extra}]"], env, tmp_path)
    t2 = time.perf_counter()
    print(f"\n[{extra}] fresh venv: torch==2.13.0 {t1 - t0:.0f} s, '.[{extra}]' {t2 - t1:.0f} s")

    framework, absent = EXTRAS[extra]
    probe = (
        "import importlib.util as u, ncinspect, os\n"
        f"assert ncinspect.__file__.startswith({str(venv)!r}), ncinspect.__file__\n"
        f"assert u.find_spec({framework!r}) and u.find_spec('array_api_compat')\n"
        f"assert u.find_spec({absent!r}) is None, 'the venv sees other packages'\n"
        "print('isolated')\n"
    )
    assert "isolated" in _run([py, "-c", probe], env, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    for line, code in examples:
        script = work / f"measure_md_{line}.py"
        script.write_text(code, encoding="utf-8")
        out = _run([py, str(script)], env, work)
        assert "nc1" in out, f"docs/measure.md:{line} printed no nc1 under [{extra}]:\n{out}"
    shutil.rmtree(venv)  # about 1.5 GB; the rest of tmp_path is pytest's to clean
