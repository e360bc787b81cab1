"""The panels of the trajectory and layer figures: which metrics each draws, on which split,
in which line style."""

from __future__ import annotations

from dataclasses import dataclass

from ..metrics.registry import panel_title
from ._style import direction_text

__all__ = [
    "Panel",
    "TRAJECTORY_PANELS",
    "LAYER_PANELS",
    "TRAIN_STYLE",
    "TEST_STYLE",
    "CLASSIFIER_STYLE",
]


@dataclass(frozen=True)
class Panel:
    """One panel: a title, the metrics drawn (key, split, series name, line style), log or not."""

    title: str
    lines: tuple[tuple[str, str, str, str], ...]
    log: bool = True
    direction_of: str = ""  # metric whose direction labels the y axis (default the first)
    ylabel: str = ""  # the metric's name on the y axis (default the first line's key)
    upper: float | None = None  # a fixed top of the y axis (1 for accuracies)

    @property
    def direction_key(self) -> str:
        return self.direction_of or self.lines[0][0]

    @property
    def y_label(self) -> str:
        """The y-axis label: the metric's name and its direction on a second line."""
        name = self.ylabel or self.lines[0][0]
        direction = direction_text(self.direction_key)
        return f"{name}\n({direction})" if direction else name


#: Line style of each meaning, the same in every panel: the training split solid, the test
#: split dashed, the classifier (one W for every split) dotted.
TRAIN_STYLE, TEST_STYLE, CLASSIFIER_STYLE = "-", "--", ":"


def _pair(means: str, weights: str, weights_name: str = "classifier", **kw) -> Panel:
    """A panel with the means on train and test and the classifier rows (split-free), titled
    by the registry (:func:`~ncinspect.metrics.registry.panel_title` of the means' key)."""
    return Panel(
        panel_title(means),
        (
            (means, "train", "means, train", TRAIN_STYLE),
            (means, "test", "means, test", TEST_STYLE),
            (weights, "train", weights_name, CLASSIFIER_STYLE),
        ),
        **kw,
    )


def _split_pair(key: str, **kw) -> Panel:
    """A panel with one metric on the training and the test split, titled by the registry."""
    return Panel(
        panel_title(key),
        ((key, "train", "train", TRAIN_STYLE), (key, "test", "test", TEST_STYLE)),
        **kw,
    )


#: The Papyan et al. panels, the generalized GNC2/UNC3 ones and accuracy, in figure order.
#: Split "train" is the training trajectory; "test" is the first non-train split of the run.
TRAJECTORY_PANELS: tuple[Panel, ...] = (
    _split_pair("nc1", ylabel="nc1"),
    _pair(
        "nc2_equinorm_means",
        "nc2_equinorm_weights",
        ylabel="nc2_equinorm",
    ),
    _pair(
        "nc2_equiangular_means",
        "nc2_equiangular_weights",
        ylabel="nc2_equiangular",
    ),
    _pair(
        "nc2_maxangle_means",
        "nc2_maxangle_weights",
        ylabel="nc2_maxangle",
    ),
    _pair(
        "etf_error_means",
        "etf_error_weights_centered",
        "classifier (centred)",
        ylabel="etf_error",
    ),
    _split_pair("nc3_self_duality", ylabel="nc3_self_duality"),
    _pair("gnc2_log_means", "gnc2_log_weights", ylabel="gnc2_log"),
    _split_pair("unc3_uniform_duality", ylabel="unc3_uniform_duality"),
    _split_pair("nc4_ncc_mismatch", log=False, ylabel="nc4_ncc_mismatch"),
    _split_pair(
        "accuracy_classifier",
        log=False,
        ylabel="accuracy_classifier",
        upper=1.0,
    ),
    # shown only when the run has them: OOD sets (split ood) and regression snapshots
    _split_pair(
        "nc5_ood_orthogonality",
        ylabel="nc5_ood_orthogonality",
    ),
    _split_pair("nrc1", ylabel="nrc1"),
    _split_pair("nrc2", ylabel="nrc2"),
    _split_pair("nrc3", ylabel="nrc3"),
)

#: Per-layer panels against depth ("intermediate" collapse).
LAYER_PANELS: tuple[Panel, ...] = (
    Panel(panel_title("nc1"), (("nc1", "train", "", TRAIN_STYLE),), ylabel="nc1"),
    Panel(
        panel_title("nc1_trace_ratio"),
        (("nc1_trace_ratio", "train", "", TRAIN_STYLE),),
        ylabel="nc1_trace_ratio",
    ),
    Panel(
        panel_title("accuracy_ncc"),
        (("accuracy_ncc", "train", "", TRAIN_STYLE),),
        log=False,
        ylabel="accuracy_ncc",
        upper=1.0,
    ),
)
