"""Add new JSON keys to the golden files without touching a single existing value.

    python tests/golden/add_keys.py          # from the repository root

For every case of tests/test_golden.py it runs the current code and walks its JSON beside the
byte-identity reference of this machine (``identity_file`` of tests/test_golden.py: the
file of this BLAS kernel): every key the reference has must hold exactly the same value
(same JSON text; ``ncinspect_version`` aside), or the script stops and names the first
difference; keys the reference lacks are new. The new keys (with the current values) are
then inserted into ``NAME.json``, ``identity/NAME.json`` and ``identity/*/NAME.json`` where
present, whose existing values are left as they are (they may differ from this machine's in
the last bits: that is what identity/ is for; the new keys of another kernel's file carry
this machine's bits: on a machine of that kernel, check its old values with this script's
walk and write its ``identity/<architecture>/`` again, ``python tests/test_golden.py
--write-identity``, as identity/SkylakeX/ was). Files are written in the report's format
(sorted keys, indent 2, newline at the end), and the script first checks that this format
reproduces each stored file byte for byte.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
sys.path.insert(0, str(ROOT))


def _dump(data) -> str:
    return json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n"


def _same(old, new, where: str, added: list[str]) -> None:
    """Every value of ``old`` equals ``new`` (dicts may gain keys: listed in ``added``)."""
    if isinstance(old, dict):
        if not isinstance(new, dict) or not set(old) <= set(new):
            raise SystemExit(f"{where}: keys removed: {sorted(set(old) - set(new or {}))}")
        added += [f"{where}.{k}" for k in new if k not in old]
        for k in old:
            if k != "ncinspect_version":
                _same(old[k], new[k], f"{where}.{k}", added)
    elif isinstance(old, list):
        if not isinstance(new, list) or len(old) != len(new):
            raise SystemExit(f"{where}: list changed length")
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _same(a, b, f"{where}[{i}]", added)
    elif json.dumps(old) != json.dumps(new):
        raise SystemExit(f"{where}: value changed: {old!r} -> {new!r}")


def _insert(old, new):
    """``old`` with the keys only ``new`` has (recursively, lists by position)."""
    if isinstance(old, dict):
        out = {k: _insert(v, new[k]) if k in new else v for k, v in old.items()}
        out.update({k: v for k, v in new.items() if k not in old})
        return out
    if isinstance(old, list):
        return [_insert(a, b) for a, b in zip(old, new, strict=True)]
    return old


def main() -> None:
    import os

    from ncinspect.cli import main as cli
    from tests.test_golden import CASES, identity_file

    os.chdir(ROOT)
    for name, args in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.json"
            extra = ["-q"] if args[0] == "report" else []
            assert cli([*args, "--json", str(out), *extra]) == 0
            new = json.loads(out.read_text())
        files = [GOLDEN / f"{name}.json", GOLDEN / "identity" / f"{name}.json"]
        files += sorted((GOLDEN / "identity").glob(f"*/{name}.json"))
        files = [p for p in files if p.exists()]
        basis = identity_file(name)  # this machine's exact values
        for path in files:
            text = path.read_text()
            if _dump(json.loads(text)) != text:
                raise SystemExit(f"{path}: not in the report's JSON format; nothing written")
        added: list[str] = []
        _same(json.loads(basis.read_text()), new, "$", added)
        for path in files:
            path.write_text(_dump(_insert(json.loads(path.read_text()), new)))
        keys = sorted({re.sub(r"\[\d+\]", "", a) for a in added})
        print(f"{name}: {len(added)} new key(s) added ({', '.join(keys)})")


if __name__ == "__main__":
    main()
