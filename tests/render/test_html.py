"""`report FILE --html PAGE`: one self-contained page, checked in headless Chromium.

Chromium (Debian's ``chromium``, installed by .ci/run) is required: without it these tests
fail. Every browser run keeps its profile, cache and outputs under tmp_path.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from ncinspect.cli import main

HOSTILE = "<script>alert(1)</script>"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed (apt-get install -y chromium; see .ci/run)")
    return path


def _browse(tmp_path, page, *flags, timeout=90) -> subprocess.CompletedProcess:
    """One headless Chromium run on ``page`` with everything kept under tmp_path."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-extensions",
        "--disable-sync",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--mute-audio",
        f"--user-data-dir={profile}",
        f"--disk-cache-dir={tmp_path / 'chromium-cache'}",
        "--enable-logging=stderr",
        "--v=0",
        *flags,
        page.as_uri(),
    ]
    env = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "XDG_CONFIG_HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _console_lines(stderr: str) -> list[str]:
    """What the page wrote to the console (errors, CSP refusals, failed loads)."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A dump with hostile names, its report page (with a bootstrap), and the folder."""
    tmp = tmp_path_factory.mktemp("html")
    rng = np.random.default_rng(0)
    C, d, n = 5, 8, 30
    mu = 3.0 * rng.standard_normal((C, d))
    y = np.repeat(np.arange(C), n)
    path = tmp / "run.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f["class_names"] = np.array([f"cat{c}" if c else HOSTILE for c in range(C)], dtype="S")
        for ep in (1, 5, 20):
            g = f.create_group(f"epoch_{ep:04d}")
            g["features"] = (mu[y] + rng.standard_normal((y.size, d)) * 2.0 / ep).astype(np.float32)
            g["weights"] = mu + rng.standard_normal((C, d)) / ep
            g.attrs["epoch"] = ep
            g.attrs["note"] = HOSTILE
        bad = f.create_group("epoch_0030 <b onmouseover=alert(2)>")
        bad["features"] = (mu[y] + rng.standard_normal((y.size, d)) * 0.05).astype(np.float32)
        bad["weights"] = mu
        bad.attrs["epoch"] = 30
    out = tmp / "report.html"
    assert main(["report", str(path), "--html", str(out), "--bootstrap", "5", "-q"]) == 0
    return path, out, out.read_text(encoding="utf-8")


def test_page_is_self_contained_and_escapes_names(page):
    _, _, text = page
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert "onmouseover=" not in text.replace("&lt;b onmouseover=alert(2)&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the class name, shown literally
    assert "&lt;b onmouseover=alert(2)&gt;" in text  # the snapshot name, shown literally
    # every resource is inline: nothing to fetch
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]+)""", text)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert "http://" not in text and "https://" not in text and "url(" not in text
    assert "default-src 'none'" in text  # the browser is told to load nothing else
    assert "name='viewport' content='width=device-width" in text and "@media print" in text
    for section in (
        "Summary",
        "Trajectories",
        "Geometry",
        "Worst classes",
        "Warnings",
        "Conventions",
    ):
        assert f"<h2>{section}</h2>" in text
    assert "95% interval (B=5)" in text and "mean of class means" in text


def test_html_options_leave_the_other_outputs_alone(page, tmp_path):
    path, _, _ = page
    js = tmp_path / "r.json"
    assert (
        main(["report", str(path), "--html", str(tmp_path / "p.html"), "--json", str(js), "-q"])
        == 0
    )
    assert all(s["per_class"] is None for s in json.loads(js.read_text())["snapshots"])


def test_html_never_overwrites_its_input(page, capsys):
    path, _, _ = page
    before = path.read_bytes()
    assert main(["report", str(path), "--html", str(path), "-q"]) == 3
    assert "never overwrites its inputs" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main(["report", str(path), "--html", "-"]) == 2


def test_loads_in_chromium_without_console_errors(page, tmp_path):
    _, out, _ = page
    run = _browse(tmp_path, out, "--dump-dom", "--virtual-time-budget=3000")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "<h2>Worst classes</h2>" in run.stdout
    assert _console_lines(run.stderr) == []
    # the check can fail: a page that fetches and scripts is reported on the console
    bad = tmp_path / "bad.html"
    bad.write_text(
        out.read_text().replace(
            "</body>",
            "<img src=\"http://127.0.0.1:9/x.png\"><script>console.error('boom')</script></body>",
        ),
        encoding="utf-8",
    )
    run = _browse(tmp_path, bad, "--dump-dom", "--virtual-time-budget=3000")
    assert len(_console_lines(run.stderr)) >= 2


_PROBE = """<script>
window.__errors = [];
window.onerror = function (msg) { window.__errors.push(String(msg)); };
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = {errors: window.__errors, inner: window.innerWidth,
    scroll: document.documentElement.scrollWidth,
    images: imgs.map(function (i) { return {ok: i.complete && i.naturalWidth > 0,
      width: i.getBoundingClientRect().width}; })};
  var pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


def _probe(tmp_path, out, width, height=900) -> dict:
    """Load an instrumented copy (the policy meta swapped for a probe script) and read
    what the probe found: script errors, page width and the images' state."""
    text = re.sub(
        r"<meta http-equiv=\"Content-Security-Policy\"[^>]*>",
        _PROBE,
        out.read_text(encoding="utf-8"),
    )
    probe = tmp_path / f"probe_{width}.html"
    probe.write_text(text, encoding="utf-8")
    run = _browse(
        tmp_path,
        probe,
        "--dump-dom",
        "--virtual-time-budget=5000",
        f"--window-size={width},{height}",
    )
    m = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.S)
    assert m, run.stderr[-2000:]
    import html as _html

    return json.loads(_html.unescape(m.group(1)))


@pytest.mark.parametrize("width", [390, 1280])
def test_readable_on_a_phone_and_a_desktop(page, tmp_path, width):
    _, out, _ = page
    found = _probe(tmp_path, out, width)
    assert found["errors"] == []
    # headless Chromium does not make a window narrower than 500 CSS pixels: a phone in
    # landscape, or a large phone; the page's narrow-screen rules start below 600
    assert found["inner"] == max(width, 500)
    width = found["inner"]
    assert found["scroll"] <= found["inner"]  # no sideways page scroll: wide tables scroll inside
    assert len(found["images"]) == 2 and all(i["ok"] for i in found["images"])
    assert all(0 < i["width"] <= width for i in found["images"])


def _coloured_pixels(png) -> np.ndarray:
    import matplotlib.image as mpimg

    img = mpimg.imread(png)[..., :3]
    spread = img.max(axis=2) - img.min(axis=2)  # saturation: figures are coloured, text grey
    return spread > 0.25


def test_screenshot_shows_the_figures(page, tmp_path):
    _, out, text = page
    shot = tmp_path / "shot.png"
    run = _browse(tmp_path, out, f"--screenshot={shot}", "--window-size=1280,4000")
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    coloured = _coloured_pixels(shot)
    rows = np.flatnonzero(coloured.any(axis=1))
    cols = np.flatnonzero(coloured.any(axis=0))
    assert coloured.sum() > 5000  # the trajectories' lines and the Gram matrices
    assert rows.size and rows[-1] - rows[0] > 400 and cols[-1] - cols[0] > 400
    # control: the same page with the figures blanked has (almost) no coloured pixel
    blank = tmp_path / "blank.html"
    blank.write_text(re.sub(r'src="data:image/png;base64,[^"]+"', 'src=""', text), encoding="utf-8")
    shot2 = tmp_path / "blank.png"
    _browse(tmp_path, blank, f"--screenshot={shot2}", "--window-size=1280,4000")
    assert _coloured_pixels(shot2).sum() * 50 < coloured.sum()


def test_prints_to_pdf(page, tmp_path):
    _, out, _ = page
    pdf = tmp_path / "report.pdf"
    run = _browse(tmp_path, out, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    assert run.returncode == 0 and pdf.exists(), run.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20000
