"""The metric registry: one entry per JSON key of spec/metrics.md, in report order.

Every table, CSV column, JSON key, check rule and plot label derives from :data:`REGISTRY`:
the key, its table group, which direction is better, a short title (the table's meaning
column), the formula, the transformations it is invariant to and its reference. This module
is plain data (no numpy, no IO), so anything may import it.

Invariances (checked by the tests for every metric that declares them):

- ``feature_scale``: features multiplied by a > 0, classifier unchanged;
- ``weight_scale``: classifier rows and bias multiplied by a > 0;
- ``rotation``: features ``h -> Q h`` and classifier rows ``w -> Q w`` (Q orthogonal);
- ``permutation``: classes relabelled (labels, rows of W and entries of b permuted together);
- ``sample_order``: the rows of a snapshot shuffled (every metric declares it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .registry_extra import OOD_SCORE_ROWS, OOD_SCORES, SPECTRA_ROWS

__all__ = [
    "INVARIANCES",
    "MetricSpec",
    "REGISTRY",
    "OOD_REGISTRY",
    "OOD_SCORES",
    "SPECTRA_REGISTRY",
    "extra_keys",
    "REGRESSION_REGISTRY",
    "LAW_REGISTRY",
    "LAW_KEYS",
    "BY_KEY",
    "GROUPS",
    "UNIFORMITY_GROUPS",
    "metric_keys",
    "lookup",
    "direction_of",
    "short_title",
    "columns",
    "DIRECTION_WORDS",
    "DIRECTION_ARROWS",
    "COMPACT_METRICS",
    "LAYER_METRICS",
    "REGRESSION_LAYER_METRICS",
    "UNIFORMITY_COLUMNS",
    "table_entries",
    "table_info",
    "metric_rows",
    "compact_columns",
    "no_etf_note",
    "spec",
]

INVARIANCES = ("feature_scale", "weight_scale", "rotation", "permutation", "sample_order")
_ALL = frozenset(INVARIANCES)
_OUTPUTS = frozenset({"rotation", "permutation", "sample_order"})  # values of W h + b themselves
#: argmax or ratios of W h + b
_DECISIONS = frozenset({"weight_scale", "rotation", "permutation", "sample_order"})

#: a regression snapshot has no classes to relabel
_REGRESSION = frozenset({"feature_scale", "weight_scale", "rotation", "sample_order"})

PAPYAN = "Papyan, Han & Donoho 2020"


@dataclass(frozen=True)
class MetricSpec:
    """One metric: JSON key, table group, better direction, title, formula, invariances.

    ``direction`` is ``lower``, ``higher``, ``zero`` (0 is ideal), ``one`` (1 is ideal) or
    ``info`` (no better direction). ``kind`` is ``float``, ``int`` or ``bool``. ``short`` is
    the column header of the compact and per-layer tables (default: the key). ``scope`` is
    ``snapshot`` (one value per snapshot) or ``layers`` (one per epoch and split, fitted
    over the layers: :data:`LAW_REGISTRY`).
    """

    key: str
    group: str
    direction: str
    title: str
    formula: str
    invariances: frozenset[str] = _ALL
    reference: str = ""
    kind: str = "float"
    short: str = ""
    scope: str = "snapshot"

    @property
    def label(self) -> str:
        """The short column header (``short``, or the key when it has none)."""
        return self.short or self.key


def _m(
    key, group, direction, title, formula, inv=_ALL, ref="", kind="float", short="", scope=None
) -> MetricSpec:
    inv, scope = frozenset(inv), scope or "snapshot"
    return MetricSpec(key, group, direction, title, formula, inv, ref, kind, short, scope)


def _row(row: tuple) -> MetricSpec:
    """An entry of :mod:`.registry_extra` (invariances given as those it lacks)."""
    key, group, direction, title, formula, lacks, ref, short = row
    return _m(key, group, direction, title, formula, _ALL - set(lacks), ref, short=short)


#: Every metric, in the default report order (groups stay together).
REGISTRY: tuple[MetricSpec, ...] = (
    # NC1 --------------------------------------------------------------------------------
    _m("nc1", "NC1", "lower", "Tr(Sigma_W Sigma_B^+)/C: within- vs between-class variability",
       "Tr(Sigma_W Sigma_B^+) / C, rank-limited pseudo-inverse", ref=PAPYAN),
    _m("nc1_trace_ratio", "NC1", "lower", "Tr(Sigma_W)/Tr(Sigma_B)",
       "Tr(Sigma_W) / Tr(Sigma_B)", short="trace ratio"),
    _m("nc1_cdnv", "NC1", "lower", "class-distance normalised variance, mean over pairs",
       "mean_{c<c'} (v_c + v_c') / (2 ||mu_c - mu_c'||^2)", ref="Galanti et al. 2022"),
    _m("nc1_cdnv_exp2", "NC1", "lower", "CDNV with squared distances squared again",
       "mean_{c<c'} (v_c + v_c') / (2 ||mu_c - mu_c'||^4)",
       inv=_ALL - {"feature_scale"}, ref="Wu & Papyan 2024"),
    _m("nc1_cdnv_directional", "NC1", "lower",
       "CDNV along the axis separating each pair (isotropic classes: nc1_cdnv/d)",
       "mean_{c<c'} (q(c,u) + q(c',u)) / (2 ||mu_c - mu_c'||^2), u = unit(mu_c - mu_c'), "
       "q(c,u) = mean_{y_i=c} ((h_i - mu_c).u)^2", ref="Luthra, Salunkhe & Galanti 2026",
       short="CDNV dir."),
    # NC2 --------------------------------------------------------------------------------
    _m("nc2_equinorm_means", "NC2", "lower", "std/mean of centred class-mean norms",
       "std_ddof1(||mu_c - mu_G||) / mean(||mu_c - mu_G||)", ref=PAPYAN),
    _m("nc2_equinorm_weights", "NC2", "lower", "std/mean of classifier row norms",
       "std_ddof1(||w_c||) / mean(||w_c||)", ref=PAPYAN),
    _m("nc2_equiangular_means", "NC2", "lower", "std of pairwise cosines of centred means",
       "std_ddof0 over c<c' of cos(mu_c - mu_G, mu_c' - mu_G)", ref=PAPYAN),
    _m("nc2_equiangular_weights", "NC2", "lower", "std of pairwise cosines of classifier rows",
       "std_ddof0 over c<c' of cos(w_c, w_c')", ref=PAPYAN),
    _m("nc2_maxangle_means", "NC2", "lower", "mean |cos + 1/(C-1)| of centred means",
       "mean_{c<c'} |cos(mu_c - mu_G, mu_c' - mu_G) + 1/(C-1)|", ref=PAPYAN),
    _m("nc2_maxangle_weights", "NC2", "lower", "mean |cos + 1/(C-1)| of classifier rows",
       "mean_{c<c'} |cos(w_c, w_c') + 1/(C-1)|", ref=PAPYAN),
    _m("etf_error_means", "NC2", "lower", "distance of the means' Gram to the simplex ETF",
       "|| M~ M~^T/||M~ M~^T||_F - E ||_F", short="ETF means"),
    _m("etf_error_floor", "NC2", "info", "smallest etf_error_means reachable in d dimensions",
       "sqrt(2 - 2 sqrt(d/(C-1))) when d < C-1, else 0", short="ETF floor"),
    _m("etf_feasible", "NC2", "info", "d >= C-1: a simplex ETF fits in d dimensions",
       "d >= C - 1", kind="bool"),
    _m("etf_error_weights", "NC2", "lower", "distance of W W^T to the simplex ETF",
       "|| W W^T/||W W^T||_F - E ||_F"),
    _m("etf_error_weights_centered", "NC2", "lower", "same, W with its mean row removed",
       "etf_error(W - mean_row(W), same)", short="ETF W centred"),
    # NC3 --------------------------------------------------------------------------------
    _m("nc3_self_duality", "NC3", "lower", "||W/||W|| - M/||M||||^2 (squared, in [0, 4])",
       "|| W/||W||_F - M~/||M~||_F ||_F^2", ref=PAPYAN, short="self-duality"),
    _m("nc3_duality_etf_error", "NC3", "lower", "distance of W M^T to the simplex ETF",
       "|| W M~^T/||W M~^T||_F - E ||_F", ref="Zhu et al. 2021"),
    _m("nc3_duality_cos", "NC3", "higher", "mean cos(w_c, mu_c - mu_G)",
       "mean_c cos(w_c, mu_c - mu_G)"),
    # NC4 --------------------------------------------------------------------------------
    _m("nc4_ncc_mismatch", "NC4", "lower", "classifier vs nearest-class-centre disagreement",
       "mean_i [argmax_c (W h_i + b)_c != argmin_c ||h_i - mu_c||]", inv=_DECISIONS,
       ref=PAPYAN, short="NCC mismatch"),
    _m("accuracy_classifier", "NC4", "higher", "accuracy of argmax(W h + b)",
       "mean_i [argmax_c (W h_i + b)_c == y_i]", inv=_DECISIONS, short="accuracy"),
    _m("accuracy_ncc", "NC4", "higher", "accuracy of the nearest class centre",
       "mean_i [argmin_c ||h_i - mu_c|| == y_i]", short="NCC accuracy"),
    # generalized metrics ----------------------------------------------------------------
    _m("gnc2_log_means", "GNC2", "lower", "variance of log(1/dist) of unit centred means",
       "var_{c<c'} log(1/||u_c - u_c'||), u_c = (mu_c - mu_G)/||mu_c - mu_G||",
       ref="Liu et al. 2023; Wu & Papyan 2024", short="GNC2 log"),
    _m("gnc2_dist_means", "GNC2", "lower", "variance of distances of unit centred means",
       "var_{c<c'} ||u_c - u_c'||", ref="Wu & Papyan 2024"),
    _m("gnc2_energy_log_means", "GNC2", "lower",
       "log energy of unit centred means (ETF: -0.5 log(2C/(C-1)))",
       "mean_{c<c'} log(1/||u_c - u_c'||)", ref="Liu et al. 2023", short="log energy"),
    _m("gnc2_log_weights", "GNC2", "lower", "variance of log(1/dist) of unit classifier rows",
       "var_{c<c'} log(1/||w^_c - w^_c'||), w^_c = w_c/||w_c||",
       ref="Liu et al. 2023; Wu & Papyan 2024"),
    _m("gnc2_dist_weights", "GNC2", "lower", "variance of distances of unit classifier rows",
       "var_{c<c'} ||w^_c - w^_c'||", ref="Wu & Papyan 2024"),
    _m("gnc2_energy_log_weights", "GNC2", "lower", "log energy of unit classifier rows",
       "mean_{c<c'} log(1/||w^_c - w^_c'||)", ref="Liu et al. 2023"),
    _m("unc3_uniform_duality", "UNC3", "lower", "variance over classes of cos(w_c, mu_c - mu_G)",
       "var_c cos(w_c, mu_c - mu_G)", ref="Wu & Papyan 2024"),
    _m("bias_collapse", "bias", "lower", "||W mu_G + b||: bias cancelling the global mean",
       "||W mu_G + b||_2 (b = 0 when absent)", inv=_OUTPUTS, ref="Zhu et al. 2021"),
    _m("of_error_weights", "OF", "lower", "distance of W W^T to an orthogonal frame",
       "|| W W^T/||W W^T||_F - I/sqrt(C) ||_F", ref="Dang et al. 2023"),
    _m("of_error_means", "OF", "lower", "same for the uncentred class means",
       "|| M M^T/||M M^T||_F - I/sqrt(C) ||_F, M uncentred means", ref="Dang et al. 2023"),
    _m("of_error_duality", "OF", "lower", "distance of W M^T to an orthogonal frame",
       "|| W M^T/||W M^T||_F - I/sqrt(C) ||_F, M uncentred means", ref="Dang et al. 2023"),
    _m("seli_error_weights", "SELI", "lower", "distance of W W^T to the SELI geometry",
       "|| W W^T/||.||_F - U L U^T/||L||_F ||_F (Z^ = U L V^T)",
       ref="Thrampoulidis et al. 2022"),
    _m("seli_error_means", "SELI", "lower", "same for the uncentred class means' Gram",
       "|| M M^T/||.||_F - U L^-1 U^T/||L^-1||_F ||_F", ref="Thrampoulidis et al. 2022"),
    _m("seli_error_logits", "SELI", "lower", "distance of the class logits W M^T to SELI",
       "|| W M^T/||.||_F - U U^T/||U U^T||_F ||_F", ref="Thrampoulidis et al. 2022"),
    _m("minority_collapse", "SELI", "lower",
       "mean pairwise cos of classifier rows of minority classes (1 = collapsed)",
       "mean_{c<c' minority} cos(w_c, w_c'), minority: n_c < max(n)/2",
       ref="Fang et al. 2021"),
    # SQI --------------------------------------------------------------------------------
    _m("sqi_eps1", "SQI", "lower", "1 - mean true-class output",
       "1 - mean_i f_{y_i}(x_i)", inv=_OUTPUTS),
    _m("sqi_eps2", "SQI", "zero", "mean wrong-class output",
       "mean_{i, c != y_i} f_c(x_i)", inv=_OUTPUTS),
    _m("sqi_delta", "SQI", "zero", "eps1 - (C-1) eps2 (0 under exact SQI)",
       "sqi_eps1 - (C-1) sqi_eps2", inv=_OUTPUTS),
    _m("sqi_ratio", "SQI", "one", "eps1 / ((C-1) eps2) (1 under exact SQI)",
       "sqi_eps1 / ((C-1) sqi_eps2)", inv=_OUTPUTS),
    _m("sqi_spread", "SQI", "lower", "||F - T||/||T||: outputs vs the class-constant pattern",
       "||F - T||_F / ||T||_F", inv=_DECISIONS),
    _m("mse", "SQI", "lower", "mean square error against one-hot targets",
       "(1/(N C)) sum_i ||f(x_i) - onehot(y_i)||^2", inv=_OUTPUTS),
    _m("interpolates", "SQI", "info", "max |f - onehot| < 1e-3 on every sample",
       "max_i ||f(x_i) - onehot(y_i)||_inf < 1e-3", inv=_OUTPUTS, kind="bool"),
)  # fmt: skip

#: Metrics of the other snapshot kinds, kept out of :data:`REGISTRY` (a classification
#: snapshot's keys): ``nc5_ood_orthogonality`` (no W in it: every invariance) appears on
#: the in-distribution snapshots of a dump with OOD sets (``nc5_ood_orthogonality_<name>``
#: per named set, same entry), nrc1-nrc3 on regression snapshots only
#: (:mod:`ncinspect.metrics.ood`, :mod:`.regression`). "rotation" and "feature_scale"
#: here rotate or scale every feature vector (OOD ones too), "weight_scale" scales W.
OOD_REGISTRY: tuple[MetricSpec, ...] = (
    _m("nc5_ood_orthogonality", "NC5", "lower",
       "mean |cos(mu_c, OOD mean)|: OOD mean vs uncentred class means",
       "mean_c |cos(mu_c, mu_G^ood)|, mu_c uncentred, mu_G^ood the OOD sample mean",
       inv=_ALL, ref="Ammar et al. 2024", short="NC5"),
    *(_row(r) for r in OOD_SCORE_ROWS),
)  # fmt: skip
#: Opt-in spectral metrics (``--spectra``): reported only when asked for, after the others.
SPECTRA_REGISTRY: tuple[MetricSpec, ...] = tuple(_row(r) for r in SPECTRA_ROWS)
REGRESSION_REGISTRY: tuple[MetricSpec, ...] = (
    _m("nrc1", "NRC", "lower", "normalised features off their top-t principal subspace",
       "mean_i ||h^_i - P_pca h^_i||^2, h^ = h/||h||, P_pca: top t PCs of the centred h^",
       inv=_REGRESSION, ref="Andriopoulos et al. 2024"),
    _m("nrc2", "NRC", "lower", "normalised features off the row space of W",
       "mean_i ||h^_i - P_W h^_i||^2, P_W: projector on the row space of W (t, d)",
       inv=_REGRESSION, ref="Andriopoulos et al. 2024"),
    _m("nrc3", "NRC", "lower", "W W^T vs Sigma_Y^1/2 - sqrt(gamma) I, best gamma",
       "min_{gamma in [0, lambda_min(Sigma_Y)]} || W W^T/||.||_F - (Sigma_Y^1/2 - sqrt(gamma) I)"
       "/||.||_F ||_F^2", inv=_REGRESSION,
       ref="Andriopoulos et al. 2024"),
)  # fmt: skip

#: The layer-wise law (He & Su 2023): one value per (epoch, split), fitted over its layers'
#: nc1 (:mod:`ncinspect.metrics.layer_law`); every invariance of nc1 holds.
HE_SU = "He & Su 2023"
LAW_REGISTRY: tuple[MetricSpec, ...] = (
    _m("layer_rate", "law", "lower", "exp(slope) of log nc1 against layer: separation per layer",
       "exp(slope), least squares of log nc1_l on the layer position l", ref=HE_SU,
       short="rate", scope="layers"),
    _m("layer_law_intercept", "law", "info", "intercept of the fit of log nc1 against layer",
       "intercept of the least-squares line of log nc1_l on l", ref=HE_SU, short="intercept",
       scope="layers"),
    _m("layer_law_r", "law", "lower", "Pearson r of (layer, log nc1): -1 when the law holds",
       "corr(l, log nc1_l)", ref=HE_SU, short="r", scope="layers"),
    _m("layer_law_layers", "law", "info", "layers in the fit", "number of layers fitted",
       ref=HE_SU, kind="int", short="layers", scope="layers"),
)  # fmt: skip
LAW_KEYS: tuple[str, ...] = tuple(m.key for m in LAW_REGISTRY)

BY_KEY: dict[str, MetricSpec] = {
    m.key: m
    for m in (*REGISTRY, *OOD_REGISTRY, *SPECTRA_REGISTRY, *REGRESSION_REGISTRY, *LAW_REGISTRY)
}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(m.group for m in REGISTRY))
#: Groups that lead the table when no simplex ETF fits in d dimensions (d < C - 1).
UNIFORMITY_GROUPS: tuple[str, ...] = ("GNC2", "UNC3")


def metric_keys() -> tuple[str, ...]:
    """Every JSON key, in report order."""
    return tuple(m.key for m in REGISTRY)


def spec(key: str) -> MetricSpec:
    """The registry entry of ``key`` (KeyError for an unknown key)."""
    return BY_KEY[key]


def table_entries(metrics: Mapping[str, Any] | None = None) -> list[MetricSpec]:
    """The registry in table order for one snapshot's ``metrics``.

    When ``metrics["etf_feasible"]`` is False (d < C - 1, no simplex ETF exists) the
    uniformity groups (:data:`UNIFORMITY_GROUPS`) come first, since the ETF-type errors then
    cannot reach 0 (``etf_error_floor``, next to ``etf_error_means``, is their floor).
    """
    entries = list(REGISTRY)
    if metrics is not None and metrics.get("etf_feasible") is False:
        lead = [m for m in entries if m.group in UNIFORMITY_GROUPS]
        entries = lead + [m for m in entries if m.group not in UNIFORMITY_GROUPS]
    return entries


def table_info(metrics: Mapping[str, Any] | None = None) -> list[tuple[str, str, str, str]]:
    """``(key, group, direction, title)`` rows of :func:`table_entries` (the table's rows)."""
    return [(m.key, m.group, m.direction, m.title) for m in table_entries(metrics)]


def metric_rows(task: str, metrics: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(key, group, direction, title)`` of the metrics one snapshot reports, in table order.

    ``task`` is the snapshot's: ``regression`` (nrc1-3), ``ood`` (none) or a classification
    one (:func:`table_info`, then the nc5 keys present in ``metrics``, sorted).
    """
    if task == "regression":
        return [(m.key, m.group, m.direction, m.title) for m in REGRESSION_REGISTRY]
    if task == "ood":
        return []
    rows = []
    for key in extra_keys(metrics):
        m = lookup(key)
        rows.append((key, m.group, m.direction, m.title))
    return [*table_info(metrics), *rows]


def extra_keys(metrics: Mapping[str, Any]) -> list[str]:
    """The keys of ``metrics`` beyond :data:`REGISTRY` that a classification snapshot reports:
    the spectral keys present (registry order), then the OOD keys present (nc5, then the
    scores' AUROC and FPR95; each followed by its per-set ``_<name>`` keys, sorted)."""
    out = [m.key for m in SPECTRA_REGISTRY if m.key in metrics]
    rest = [k for k in metrics if k not in _NEVER_OOD]  # the ~100 core keys skipped at once
    for m in OOD_REGISTRY:
        out.extend(sorted(k for k in rest if k == m.key or k.startswith(m.key + "_")))
    return out


def _never_ood() -> frozenset[str]:
    """The keys of :data:`REGISTRY` and the spectra that no OOD key pattern matches."""
    keys = [m.key for m in (*REGISTRY, *SPECTRA_REGISTRY)]
    prefixes = [(m.key, m.key + "_") for m in OOD_REGISTRY]
    return frozenset(k for k in keys if not any(k == a or k.startswith(b) for a, b in prefixes))


_NEVER_OOD = _never_ood()


#: Each direction in words (figure labels) and as the table's "better" column.
DIRECTION_WORDS = {
    "lower": "lower is better",
    "higher": "higher is better",
    "zero": "0 is ideal",
    "one": "1 is ideal",
    "info": "",
}
DIRECTION_ARROWS = {
    "lower": "↓ lower",
    "higher": "↑ higher",
    "zero": "→ 0",
    "one": "→ 1",
    "info": "",
}

#: Columns of the compact table (several snapshots at once), in order.
COMPACT_METRICS: tuple[str, ...] = (
    "nc1",
    "nc1_trace_ratio",
    "etf_error_means",
    "etf_error_weights_centered",
    "nc3_self_duality",
    "nc4_ncc_mismatch",
    "accuracy_classifier",
    "mse",
)
#: Columns of the per-layer table (metrics against depth: "intermediate" collapse).
LAYER_METRICS: tuple[str, ...] = ("nc1", "nc1_trace_ratio", "accuracy_ncc")
#: The same for a report of regression snapshots only.
REGRESSION_LAYER_METRICS: tuple[str, ...] = ("nrc1", "nrc2")
_NC5 = "nc5_ood_orthogonality"


def lookup(key: str) -> MetricSpec | None:
    """The entry of any metric key (``nc5_ood_orthogonality_<name>`` shares nc5's, and
    ``ood_auroc_<s>_<name>`` that of ``ood_auroc_<s>``); None for a key that is no metric."""
    if key not in BY_KEY:
        for m in OOD_REGISTRY:
            if key.startswith(m.key + "_"):
                return m
    return BY_KEY.get(key)


def direction_of(key: str) -> str:
    """The better direction of ``key`` (``info`` for a key that is no metric)."""
    entry = lookup(key)
    return "info" if entry is None else entry.direction


#: Figure-panel headings (key -> heading) of the metrics the trajectory and layer figures
#: draw: panels name keys only, and take their headings from here.
PANEL_TITLES: dict[str, str] = {
    "nc1": "NC1  Tr(ΣW ΣB⁺)/C",
    "nc1_trace_ratio": "NC1  trace ratio",
    "nc2_equinorm_means": "NC2  equinorm",
    "nc2_equiangular_means": "NC2  equiangularity",
    "nc2_maxangle_means": "NC2  max-angle",
    "etf_error_means": "NC2  ETF error (means; W centred)",
    "nc3_self_duality": "NC3  self-duality",
    "gnc2_log_means": "GNC2  uniformity (log)",
    "unc3_uniform_duality": "UNC3  uniform duality",
    "nc4_ncc_mismatch": "NC4  NCC mismatch",
    "accuracy_classifier": "accuracy",
    "accuracy_ncc": "NCC accuracy",
    "nc5_ood_orthogonality": "NC5  OOD orthogonality",
    "nrc1": "NRC1  principal subspace",
    "nrc2": "NRC2  row space of W",
    "nrc3": "NRC3  W Wᵀ vs Σ_Y^½ − √γ I",
}


def panel_title(key: str) -> str:
    """The heading of a figure panel of ``key``: its :data:`PANEL_TITLES` entry, else its
    group and short title (``"NC2  nc2_equinorm_means"``)."""
    entry = lookup(key)
    if key in PANEL_TITLES:
        return PANEL_TITLES[key]
    return short_title(key) if entry is None else f"{entry.group}  {short_title(key)}"


def short_title(key: str) -> str:
    """The column header of ``key``: its ``short`` title (``NC5_<name>`` for an OOD set)."""
    if key.startswith(_NC5) and key != _NC5:
        return "NC5" + key[len(_NC5) :]
    entry = lookup(key)
    if entry is not None and key != entry.key and key.startswith(entry.key + "_"):
        return entry.label + key[len(entry.key) :]
    return key if entry is None else entry.label


def columns(keys: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """``(key, short title)`` table columns of ``keys``."""
    return tuple((k, short_title(k)) for k in keys)


#: Compact-table columns that lead when a snapshot has no simplex ETF (d < C - 1).
UNIFORMITY_COLUMNS: tuple[tuple[str, str], ...] = columns(
    ("gnc2_log_means", "gnc2_energy_log_means")
)


def compact_columns(
    columns: tuple[tuple[str, str], ...], all_metrics: list[Mapping[str, Any]]
) -> tuple[tuple[str, str], ...]:
    """The compact table's ``columns`` adapted to the snapshots' ``all_metrics``.

    When some snapshot has ``etf_feasible`` False, the uniformity columns lead and
    ``etf_error_floor`` follows ``etf_error_means``; otherwise ``columns`` unchanged.
    """
    if not any(m.get("etf_feasible") is False for m in all_metrics):
        return columns
    out = [c for c in UNIFORMITY_COLUMNS if c not in columns]
    for col in columns:
        out.append(col)
        if col[0] == "etf_error_means":
            out.append(("etf_error_floor", short_title("etf_error_floor")))
    return tuple(out)


def no_etf_note(metrics: Mapping[str, Any], n_features: int, n_classes: int) -> str | None:
    """The table's line when no simplex ETF exists (``etf_feasible`` False), else None."""
    if metrics.get("etf_feasible") is not False:
        return None
    floor = metrics.get("etf_error_floor")
    floor_text = "n/a" if floor is None else f"{floor:.4g}"
    return (
        f"No simplex ETF exists: d = {n_features} < C - 1 = {n_classes - 1}. "
        f"etf_error_means cannot go below etf_error_floor = {floor_text}; "
        "read the uniformity metrics (GNC2, UNC3) first."
    )
