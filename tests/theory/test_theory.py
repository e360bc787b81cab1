"""`ncinspect theory`: the identities of spec/theory.md, predicted against measured.

Known answers come from (a) an exact critical point of the last layer built in closed form
(no training), and (b) bias-free ReLU nets trained by the bundled trainer to a gradient norm
below 1e-8 on inputs that are constant within each class.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ncinspect import DumpWriter
from ncinspect.cli import main
from ncinspect.errors import InvalidDataError
from ncinspect.experiments import converged_config, gradient_norm, template_data
from ncinspect.theory import TheoryPass, resolve_constants, theory_arrays, theory_file

C, D = 4, 7


def _lines(theory: dict) -> dict[str, dict]:
    """The lines of a theory section in its JSON form (``TheoryResult.to_dict()``), by key."""
    return {line["key"]: line for line in theory["lines"]}


def exact_critical_point(
    Lam: float = 0.05,
    radius: float = 3.0,
    offset: float = 2.0,
    n: int = 6,
    noise: float = 0.7,
    seed: int = 0,
):
    """Features, labels, classifier and outputs of an exact critical point of the last layer.

    Class means = simplex ETF of norm ``radius`` plus an orthogonal offset (so their Gram
    matrix is ``a I + b 11^T``), all rotated at random; within-class noise has zero mean per
    class and lies orthogonal to the means (so the outputs are class-constant). With
    ``F = (Lambda C I + G)^{-1} G`` and ``W = (I - F)^T M / (Lambda C)`` the stationarity
    ``lambda W = kappa sum_i r_i h_i^T`` holds exactly for kappa = 1/N, lambda = Lambda.
    """
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((D, D)))[0]  # random rotation
    etf = np.sqrt(C / (C - 1)) * (np.eye(C) - 1.0 / C) * radius  # (C, C), rows sum to 0
    M = np.zeros((C, D))
    M[:, :C] = etf
    M[:, C] = offset
    M = M @ Q.T  # (C, D)
    y = np.repeat(np.arange(C), n)
    z = rng.standard_normal((y.size, D - C - 1)) * noise  # noise in the span of e_{C+1}..
    for c in range(C):
        z[y == c] -= z[y == c].mean(axis=0)
    H = M[y] + np.hstack([np.zeros((y.size, C + 1)), z]) @ Q.T
    G = M @ M.T
    F = np.linalg.solve(Lam * C * np.eye(C) + G, G)  # (C, C) class output pattern
    W = (np.eye(C) - F).T @ M / (Lam * C)
    return {
        "H": H,
        "y": y,
        "W": W,
        "F": F,
        "outputs": H @ W.T,
        "Lam": Lam,
        "N": y.size,
        "mu_G_sq": offset**2,
        "tr_sigma_b": radius**2,
    }


def test_exact_critical_point_matches_every_identity():
    cp = exact_critical_point()
    np.testing.assert_allclose(cp["outputs"], cp["F"][cp["y"]], atol=1e-12)  # class-constant
    res = theory_arrays(
        cp["H"],
        cp["y"],
        [cp["W"]],
        outputs=cp["outputs"],
        weight_decay=cp["Lam"],
        kappa=1.0 / cp["N"],
    )
    th = res.theory.to_dict()
    lines = _lines(th)
    identities = [ln for ln in th["lines"] if ln["holds"]]
    assert len(identities) >= 10
    for line in identities:
        assert line["status"] == "ok", line
        assert line["rel_error"] < 1e-10, line
    assert th["max_rel_error_critical"] < 1e-10 and th["max_rel_error_closed_forms"] < 1e-10
    # predicted values against independent closed forms of this construction
    Lam = cp["Lam"]
    assert lines["delta"]["predicted"] == pytest.approx(Lam / (Lam + cp["mu_G_sq"]), rel=1e-12)
    assert lines["eps_sum"]["predicted"] == pytest.approx(
        Lam * (C - 1) / (Lam * (C - 1) + cp["tr_sigma_b"]), rel=1e-12
    )
    eps1 = 1 - cp["F"][0, 0]
    assert lines["delta"]["measured"] == pytest.approx(eps1 - (C - 1) * cp["F"][0, 1], rel=1e-10)
    assert lines["output_spread"]["measured"] < 1e-12
    assert lines["residual_asymmetry"]["measured"] < 1e-10
    # NC1 only partly implied: the scatter lies orthogonal to the centred means (nc1 = 0),
    # but it is there (trace ratio > 0)
    assert res.metrics["nc1"] < 1e-12 and res.metrics["nc1_trace_ratio"] > 0.01
    assert lines["interpolates"]["measured"] is False
    assert lines["loss_floor"]["predicted"] == pytest.approx(1 / (2 * C))


def test_perturbed_classifier_has_known_residuals():
    cp = exact_critical_point()
    t = 1e-3
    res = theory_arrays(
        cp["H"],
        cp["y"],
        [cp["W"] * (1 + t)],
        outputs=cp["outputs"],
        weight_decay=cp["Lam"],
        kappa=1.0 / cp["N"],
    )
    lines = _lines(res.theory.to_dict())
    assert lines["stationarity_last_layer"]["rel_error"] == pytest.approx(t / (1 + t), rel=1e-8)
    assert lines["balance_W1"]["rel_error"] == pytest.approx((1 + t) ** 2 - 1, rel=1e-8)
    assert lines["classifier_closed_form"]["rel_error"] == pytest.approx(t, rel=1e-6)


def test_streaming_and_sample_order_do_not_change_results():
    cp = exact_critical_point(n=9)
    kw = {"weight_decay": cp["Lam"], "kappa": 1.0 / cp["N"]}
    whole = theory_arrays(cp["H"], cp["y"], [cp["W"]], outputs=cp["outputs"], **kw).theory.to_dict()
    perm = np.random.default_rng(3).permutation(cp["N"])
    other = theory_arrays(
        cp["H"][perm], cp["y"][perm], [cp["W"]], outputs=cp["outputs"][perm], chunk_rows=5, **kw
    ).theory.to_dict()
    for a, b in zip(whole["lines"], other["lines"], strict=True):
        assert a["key"] == b["key"]
        for field in ("predicted", "measured"):
            if isinstance(a[field], float):
                assert b[field] == pytest.approx(a[field], rel=1e-10, abs=1e-14)


def test_theory_pass_merge_equals_whole():
    rng = np.random.default_rng(1)
    h, f = rng.standard_normal((20, 5)), rng.standard_normal((20, 3))
    y = rng.integers(0, 3, 20)
    whole = TheoryPass.of_chunk(h, y, f)
    first, rest = TheoryPass.of_chunk(h[:7], y[:7], f[:7]), TheoryPass.of_chunk(h[7:], y[7:], f[7:])
    merged = first.merge(rest)
    r = np.eye(3)[y] - f
    np.testing.assert_allclose(merged.rh, r.T @ h, rtol=1e-12)
    np.testing.assert_allclose(whole.rh, merged.rh, rtol=1e-12)
    assert merged.rf == pytest.approx(np.sum(r * f), rel=1e-12)
    assert merged.rr == pytest.approx(np.sum(r * r), rel=1e-12) and merged.count == 20
    for c in range(3):
        np.testing.assert_allclose(merged.class_r[c], r[y == c].sum(axis=0), rtol=1e-12)
    assert merged.class_n.tolist() == np.bincount(y, minlength=3).tolist()


def test_resolve_constants():
    c = resolve_constants({"weight_decay": 5e-3, "kappa": 1 / 1000, "n_samples": 100})
    assert c.Lambda == pytest.approx(5e-3 / (1e-3 * 100)) and c.ratio == pytest.approx(0.2)
    c = resolve_constants({"Lambda": 0.5, "n_samples": 10})  # lambda, kappa not recorded
    assert c.ratio == pytest.approx(1 / 5) and c.missing_for_Lambda() == []
    c = resolve_constants({"weight_decay": 1.0, "kappa": 1.0, "n_samples": 2, "Lambda": 7.0})
    assert c.Lambda == 7.0 and "differs" in c.notes[0]
    c = resolve_constants({"weight_decay": None})  # recorded as nothing: missing
    assert c.weight_decay is None and c.missing_for_ratio() == ["weight_decay", "kappa"]
    with pytest.raises(InvalidDataError, match="weight_decay = 'n/a' is invalid"):
        resolve_constants({"weight_decay": "n/a"})  # recorded but unusable: invalid, not missing


# --- dumps without what the lines need ------------------------------------------------
def test_dump_without_metadata_gets_missing_key_lines(tmp_path, capsys):
    cp = exact_critical_point()
    path = tmp_path / "bare.h5"
    with DumpWriter(path, "w") as w:
        snap = w.snapshot("/")
        snap.append(features=cp["H"], labels=cp["y"])
        snap.write(weights=cp["W"])
    assert main(["theory", str(path)]) == 0
    out = capsys.readouterr().out
    assert "missing: weight_decay" in out and "missing: params" in out
    assert "writer.set_meta(weight_decay=...)" in out and "write_params" in out
    assert main(["theory", str(path), "--json", "-"]) == 0
    th = json.loads(capsys.readouterr().out)["snapshots"][0]["theory"]
    lines = _lines(th)
    assert lines["stationarity_last_layer"]["status"] == "missing"
    assert set(lines["stationarity_last_layer"]["missing"]) == {"weight_decay", "kappa"}
    assert lines["balance_W"]["missing"][0] == "params"
    assert lines["delta"]["missing"] == ["weight_decay", "kappa", "n_samples"]
    assert {"weight_decay", "kappa", "n_samples", "params"} <= set(th["missing"])
    # outputs computed as W h: the SQI and Lemma 1 lines still have numbers
    assert lines["loss_floor"]["status"] == "ok" and lines["loss_floor"]["measured"] > 0


def test_dump_with_only_features_and_labels(tmp_path, capsys):
    cp = exact_critical_point()
    path = tmp_path / "features.h5"
    with DumpWriter(path, "w") as w:
        w.set_meta(weight_decay=0.1, kappa=0.5, n_samples=cp["N"])
        snap = w.snapshot("/")
        snap.append(features=cp["H"], labels=cp["y"])
    assert main(["theory", str(path)]) == 0
    out = capsys.readouterr().out
    assert "missing: outputs" in out and "missing: weights" in out
    report, _ = theory_file(path)
    lines = _lines(report[0].theory.to_dict())
    assert lines["eps_sum"]["missing"] == ["outputs"]
    assert lines["stationarity_last_layer"]["missing"] == ["weights", "outputs"]


# --- bundled-trainer runs ---------------------------------------------------------------
def _converged_dump(folder, asymmetric: bool):
    from ncinspect.train import fit

    data = template_data(symmetric=not asymmetric)
    cfg = converged_config(data.X.shape[0])
    path = folder / ("asym.h5" if asymmetric else "sym.h5")
    hist = fit(cfg, data, dump=path)
    return path, gradient_norm(hist.params, data, cfg)


@pytest.fixture(scope="module")
def symmetric_run(tmp_path_factory):
    return _converged_dump(tmp_path_factory.mktemp("theory"), asymmetric=False)


@pytest.mark.slow
def test_converged_run_matches_every_identity(symmetric_run, capsys):
    path, grad = symmetric_run
    assert grad < 1e-8
    assert main(["theory", str(path), "-s", "/epoch_8000", "--tolerance", "1e-6"]) == 0
    out = capsys.readouterr().out
    assert "stationarity" in out and "closed forms" in out
    assert main(["theory", str(path), "-s", "/epoch_8000", "--json", "-"]) == 0
    th = json.loads(capsys.readouterr().out)["snapshots"][0]["theory"]
    identities = [ln for ln in th["lines"] if ln["holds"]]
    assert {ln["key"] for ln in identities} >= {
        "balance_W1",
        "balance_W2",
        "balance_W3",
        "layer_norm_spread",
        "stationarity_last_layer",
        "classifier_closed_form",
        "classifier_row_norms_sq",
        "classifier_row_cosines",
        "classifier_centered",
        "layer_norms_closed_form",
        "delta",
        "eps_sum",
    }
    for line in identities:
        assert line["status"] == "ok" and line["rel_error"] < 1e-6, line
    lines = _lines(th)
    assert lines["interpolates"]["measured"] is False  # claim 2
    assert lines["residual_asymmetry"]["measured"] < 1e-6
    assert lines["loss_floor"]["measured"] < lines["loss_floor"]["predicted"]
    # equal layer norms (balancedness) and raw classifier cosines between -1/(C-1) and 0
    norms = th["layer_norms_sq"]
    assert max(norms) - min(norms) < 1e-6 * norms[0]
    assert -1 / (C - 1) < lines["classifier_row_cosines"]["measured"] < 0


@pytest.mark.slow
def test_epoch_zero_of_the_same_run_shows_honest_residuals(symmetric_run):
    path, _ = symmetric_run
    report, skipped = theory_file(path)
    assert [r.name for r in report] == ["/epoch_0000", "/epoch_8000"]
    assert any("layer_1" in s for s in skipped)
    first = _lines(report[0].theory.to_dict())
    assert first["stationarity_last_layer"]["rel_error"] > 0.1  # initialisation: no critical point
    assert main(["theory", str(path), "-s", "/epoch_0000", "--tolerance", "1e-6"]) == 1


@pytest.mark.slow
def test_asymmetric_critical_point_exact_identities_only(tmp_path):
    """Random templates: class-constant outputs but an asymmetric output pattern, so the
    two exact identities hold while the closed forms (which need symmetry) do not."""
    path, grad = _converged_dump(tmp_path, asymmetric=True)
    assert grad < 1e-8
    report, _ = theory_file(path, snapshot="/epoch_8000")
    th = report[0].theory.to_dict()
    assert th["max_rel_error_critical"] < 1e-6
    lines = _lines(th)
    assert lines["classifier_closed_form"]["rel_error"] > 1e-3
    assert lines["output_spread"]["measured"] > 1e-3
    # the asymmetry of the class-mean residual pattern is what the closed forms miss
    assert lines["residual_asymmetry"]["measured"] > 0.05


def test_zero_weight_decay_reports_non_applicability_and_conserved_differences(tmp_path, capsys):
    from ncinspect.train import TrainConfig, fit

    data = template_data()
    cfg = TrainConfig(
        depth=3,
        width=32,
        batch_size=0,
        weight_decay=0.0,
        lr=0.01,
        momentum=0.0,
        schedule="constant",
        epochs=200,
        save_every=100,
        init_scale=0.5,
        seed=1,
    )
    path = tmp_path / "wd0.h5"
    hist = fit(cfg, data, dump=path)
    report, _ = theory_file(path)
    last = report[-1].theory.to_dict()
    assert last["applicable"] is False
    lines = _lines(last)
    for key in ("balance_W1", "stationarity_last_layer", "classifier_closed_form", "delta"):
        assert lines[key]["status"] == "not_applicable"
    final = [float(np.vdot(w, w)) for w in hist.params]
    for i in range(2):
        line = lines[f"layer_norm_diff_{i + 1}"]
        assert line["measured"] == pytest.approx(final[i] - final[i + 1], rel=1e-10)
        assert line["predicted"] == pytest.approx(
            report[0].theory.layer_norm_differences[i], rel=1e-12
        )
        assert line["rel_error"] < 1e-3  # small-step gradient descent ~ gradient flow
    assert any(d != pytest.approx(0, abs=1e-3) for d in last["layer_norm_differences"])
    assert lines["balance_W1"]["measured"] == pytest.approx(final[0], rel=1e-10)  # still shown
    assert main(["theory", str(path), "-s", "/epoch_0200"]) == 0
    out = capsys.readouterr().out
    assert "does not apply (lambda = 0)" in out and "conserved" in out
    # a gate that can check nothing does not pass
    assert main(["theory", str(path), "-s", "/epoch_0200", "--tolerance", "1e-3"]) == 1
    assert "no identity could be checked" in capsys.readouterr().err


def test_partial_training_set_does_not_check_the_sums_over_all_samples():
    cp = exact_critical_point()
    half = slice(0, None, 2)
    res = theory_arrays(
        cp["H"][half],
        cp["y"][half],
        [cp["W"]],
        outputs=cp["outputs"][half],
        weight_decay=cp["Lam"],
        kappa=1.0 / cp["N"],
        n_samples=cp["N"],
    )
    lines = _lines(res.theory.to_dict())
    for key in ("balance_W1", "stationarity_last_layer", "layer_norm_spread"):
        assert lines[key]["status"] == "not_applicable", key
        assert "samples of the loss" in lines[key]["note"]
    assert any("holds 12 of the N = 24" in n for n in res.theory.notes)
    assert lines["classifier_closed_form"]["status"] == "ok"  # uses Lambda, not the sums


def test_theory_reads_the_training_rows_in_two_passes(tmp_path, monkeypatch):
    """The sums of the identities ride pass 2: features and outputs are read twice and once
    (as for ``report``), whatever the chunking."""
    from ncinspect.io.sources import H5Source

    cp = exact_critical_point()
    path = tmp_path / "cp.h5"
    with DumpWriter(path, "w") as w:
        w.set_meta(weight_decay=cp["Lam"], kappa=1.0 / cp["N"], n_samples=cp["N"])
        snap = w.snapshot("/")
        snap.write_params([cp["W"]])
        snap.append(features=cp["H"], labels=cp["y"], outputs=cp["outputs"])
    rows: dict[str, int] = {}
    read, read_into = H5Source.read, H5Source.read_into

    def count(self, out):
        name = self.where.rsplit("/", 1)[-1]
        rows[name] = rows.get(name, 0) + (len(out) if out.ndim else 0)
        return out

    def counting(self, start=0, stop=None):
        return count(self, read(self, start, stop))

    def counting_into(self, start, stop, buf):  # chunks read into reusable buffers
        out = read_into(self, start, stop, buf)  # calls the counting read when it does not fill
        return count(self, out) if self.fills_buffers else out

    monkeypatch.setattr(H5Source, "read", counting)
    monkeypatch.setattr(H5Source, "read_into", counting_into)
    report, _ = theory_file(path, chunk_rows=5)
    assert rows["features"] == 2 * cp["N"] and rows["outputs"] == cp["N"]
    lines = _lines(report[0].theory.to_dict())
    assert lines["stationarity_last_layer"]["rel_error"] < 1e-10  # the sums are complete


def test_initial_norms_are_the_earliest_snapshot_of_each_trajectory_read_once(monkeypatch):
    """The conservation lines compare each snapshot with the earliest of its (split, layer)
    that has params: that snapshot is found once per trajectory and its params read once
    (a file of 10,000 snapshots compared every pair and read the first params 10,000 times)."""
    from types import SimpleNamespace

    import ncinspect.theory.run as run_mod

    rng = np.random.default_rng(3)
    snaps = [
        SimpleNamespace(
            name=f"/{split}/e{i}/{layer}",
            split=split,
            layer=layer,
            epoch=None if i == 5 else int(rng.integers(0, 4)),
            params=i % 3 != 1,
        )
        for i, (split, layer) in enumerate(
            [(s, lay) for s in ("train", "test", None) for lay in (None, "layer_1")] * 4
        )
    ]
    reads = []

    def read_params(snap):
        reads.append(snap.name)
        return [float(len(snap.name))], []

    monkeypatch.setattr(run_mod, "read_params", read_params)
    monkeypatch.setattr(run_mod, "layer_norms_sq", lambda params: [p * 2 for p in params])

    def naive(snap):  # the definition, as the loop over every snapshot had it
        runs = [
            s
            for s in snaps
            if s.split == snap.split and s.layer == snap.layer and s.params and s.epoch is not None
        ]
        if not runs or snap.epoch is None:
            return None
        first = min(runs, key=lambda s: s.epoch)
        if first.epoch >= snap.epoch:
            return None
        return [2.0 * len(first.name)], first.name

    initial = run_mod._InitialNorms(snaps)
    got = [initial.of(s) for s in snaps]
    assert got == [naive(s) for s in snaps]
    assert any(g is not None for g in got)
    assert len(reads) == len(set(reads))  # each trajectory's first snapshot read once
