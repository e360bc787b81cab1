"""The trainer's settings: one dataclass, every default commented."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

from ..errors import UsageError
from ..text import clip
from .optim import SCHEDULES

__all__ = ["TrainConfig", "LIMITS", "CHOICES", "field_help"]

#: Upper bounds of the trainer's sizes (a numpy trainer on a laptop; beyond them a run would
#: not fit in memory or time). ``parameters`` bounds the total number of weights, whose
#: float64 copies (weights, gradients, momentum) then stay under ~1.2 GB.
LIMITS = {
    "depth": 64,
    "width": 4096,
    "parameters": 50_000_000,
    # float64 values of the data and of every layer's activations of every sample (a
    # snapshot holds them all): each size within its bound can still multiply past memory
    # (1000 classes x 100,000 samples x 100,000 inputs: 73 TiB); ~4 GB
    "values": 500_000_000,
    "n_classes": 1000,
    "n_per_class": 100_000,
    "n_test_per_class": 100_000,
    "input_dim": 100_000,
    "mnist1d_samples": 1_000_000,
    "epochs": 10_000_000,
    "n_targets": 10_000,  # regression: targets t
    "seed": 2**63 - 1,  # stored as a 64-bit HDF5 attribute
    "separation": 1e6,  # gaussian data: larger centres overflow the square loss
    "noise": 1e6,
    "init_scale": 1e3,  # x He initialisation: beyond, the first forward pass overflows
}

#: The allowed values of the fields that take one of a few words (None is allowed where the
#: field's default is None).
CHOICES: dict[str, tuple[str, ...]] = {
    "dtype": ("float64", "float32"),
    "features_dtype": ("float64", "float32", "float16"),
    "schedule": SCHEDULES,
    "compression": ("gzip", "lzf"),
    "task": ("classification", "regression"),
    "target_map": ("linear", "smooth"),
}


@dataclass
class TrainConfig:
    """Everything that determines a training run (same config and seed -> same bytes).

    The objective is ``(kappa/2) sum_i ||y_i - f(x_i)||^2 + (lambda/2) sum_l ||W_l||_F^2``
    with ``kappa = 1/(N C)`` unless given; ``Lambda = lambda / (kappa N)`` (theory.md).
    """

    # data ------------------------------------------------------------------------------
    # "gaussian", "mnist1d" (optional extra) or an NPZ/HDF5 file with X, y (and optionally
    # X_test, y_test)
    dataset: str = "gaussian"
    n_classes: int = 10  # gaussian data: number of classes C
    n_per_class: int = 100  # gaussian data: training samples per class (N = C * n_per_class)
    n_test_per_class: int = 100  # gaussian data: held-out samples per class
    # Training samples of each class (one count per class, e.g. 500,500,50,50: a long-tailed
    # run; gaussian data get that many classes); the first n_c samples of class c are kept,
    # the test split is unchanged. Default: every sample
    class_counts: tuple[int, ...] | None = None
    input_dim: int = 32  # gaussian data: input dimension d
    separation: float = 10.0  # gaussian data: scale of the class centres (docs/trainer.md)
    noise: float = 1.0  # gaussian data: within-class noise standard deviation
    mnist1d_samples: int = 5000  # mnist1d: samples generated (80% train, 20% test)

    # task (regression: docs/trainer.md, ncinspect.train.regression) --------------------
    # regression: t real outputs fitted to targets g(A x) of gaussian inputs (nrc1-nrc3)
    task: str = "classification"
    n_targets: int = 3  # regression: number of targets t
    target_map: str = "linear"  # regression: targets A x / sqrt(d) (linear) or tanh of it (smooth)
    target_offset: float = 1.0  # regression: constant added to every target (0 = centred targets)

    # network ---------------------------------------------------------------------------
    depth: int = 4  # Number of weight matrices L (>= 2)
    width: int = 128  # Width of every hidden layer (unless --widths is given)
    widths: tuple[int, ...] | None = None  # Explicit hidden widths (depth - 1 of them)
    init_scale: float = 1.0  # Multiplies the He initialisation (small = 'rich' regime)
    dtype: str = "float64"  # Arithmetic and weight dtype

    # objective and optimiser -----------------------------------------------------------
    # lambda in (kappa/2) sum ||y - f||^2 + (lambda/2) sum ||W_l||_F^2 (Lambda = lambda C =
    # 0.02 with the default kappa)
    weight_decay: float = 2e-3
    kappa: float | None = None  # Data-term weight kappa [default: 1/(N C), the paper's form]
    lr: float = 0.01  # Peak learning rate (small: the lambda = 0 run stays near its init)
    momentum: float = 0.9  # Heavy-ball momentum (0 = plain gradient descent)
    batch_size: int = 100  # Minibatch size; 0 = full-batch gradient descent
    # Passes over the training set (0: only the snapshot of the initialisation; the default
    # takes ~1 minute on 2 cores)
    epochs: int = 6000
    schedule: str = "cosine"  # Learning-rate schedule (per epoch)
    step_every: int = 0  # step schedule: epochs between decays (0 = epochs // 3)
    gamma: float = 0.1  # step schedule: decay factor
    lr_min: float = 0.0  # cosine schedule: final learning rate

    # dumps -----------------------------------------------------------------------------
    save_every: int = 1000  # Snapshot every N epochs (epoch 0 and the last are always saved)
    features_dtype: str | None = None  # dtype of the stored features [default: --dtype]
    compression: str | None = None  # HDF5 filter of the dump's datasets (default none)

    seed: int = 0  # Seeds the data, the initialisation and the shuffling

    def hidden_widths(self) -> tuple[int, ...]:
        """The L - 1 hidden widths (``depth`` clamped to its limit: a depth out of range,
        such as 10**9, is reported by :meth:`validate`, not built as a tuple first)."""
        if self.widths is not None:
            return tuple(int(w) for w in self.widths)
        return (int(self.width),) * (min(max(self.depth, 1), LIMITS["depth"]) - 1)

    def validate(self) -> None:
        """Raise :class:`~ncinspect.errors.UsageError` on an impossible setting."""
        self._check_numbers()
        problems = [*self._limit_problems(), *self._setting_problems(), *self._data_problems()]
        if problems:
            raise UsageError("invalid training config: " + "; ".join(problems))
        if self.dataset == "gaussian":
            counts = self.class_counts
            per_class = self.n_per_class if counts is None else max(counts)
            n_samples = self.n_classes * (per_class + self.n_test_per_class)
            self.check_size(self.input_dim, self.n_classes, n_samples)
        elif self.dataset == "mnist1d":
            self.check_size(40, 10, self.mnist1d_samples)  # mnist1d: 40 inputs, 10 classes

    def _check_numbers(self) -> None:
        """Every float setting finite and every count an integer (else nothing below holds)."""
        fields = ("lr", "weight_decay", "init_scale", "separation", "noise", "momentum", "lr_min")
        fields += ("gamma", "target_offset") + (("kappa",) if self.kappa is not None else ())
        not_finite = [f"{k}={getattr(self, k)}" for k in fields if not _finite(getattr(self, k))]
        if not_finite:
            # NaN slips through every comparison below, and inf is no usable setting either
            raise UsageError(
                "invalid training config: must be finite numbers: " + ", ".join(not_finite)
            )
        ints = ("depth", "width", "epochs", "batch_size", "save_every", "seed", "n_classes")
        ints += ("n_per_class", "n_test_per_class", "input_dim", "mnist1d_samples", "step_every")
        not_int = [
            f"{k}={getattr(self, k)!r}"
            for k in ints
            if isinstance(getattr(self, k), bool)
            or not isinstance(getattr(self, k), numbers.Integral)
        ]
        if not_int:
            raise UsageError("invalid training config: must be integers: " + ", ".join(not_int))

    def _limit_problems(self) -> list[str]:
        """The sizes and scales out of their LIMITS."""
        problems = []
        if not 2 <= self.depth <= LIMITS["depth"]:
            problems.append(f"depth must be in [2, {LIMITS['depth']}], got {self.depth}")
        elif max(self.hidden_widths(), default=1) > LIMITS["width"]:
            problems.append(
                f"hidden widths must be <= {LIMITS['width']}, got {max(self.hidden_widths())}"
            )
        if not 0 <= self.seed <= LIMITS["seed"]:
            problems.append(f"seed must be in [0, 2**63 - 1], got {self.seed}")
        for name in ("n_classes", "n_per_class", "n_test_per_class", "input_dim", "epochs"):
            if getattr(self, name) > LIMITS[name]:
                problems.append(f"{name} must be <= {LIMITS[name]}, got {getattr(self, name)}")
        if (
            self.dataset == "mnist1d"
            and not 10 <= self.mnist1d_samples <= LIMITS["mnist1d_samples"]
        ):
            # mnist1d's generator needs one sample of each of its 10 classes
            problems.append(
                f"mnist1d_samples must be in [10, {LIMITS['mnist1d_samples']}], "
                f"got {self.mnist1d_samples}"
            )
        if not 0 <= self.noise <= LIMITS["noise"]:
            problems.append(
                f"noise must be in [0, {LIMITS['noise']:g}] (a standard deviation), "
                f"got {self.noise}"
            )
        if not 0 <= self.separation <= LIMITS["separation"]:
            problems.append(
                f"separation must be in [0, {LIMITS['separation']:g}], got {self.separation}"
            )
        if self.init_scale > LIMITS["init_scale"]:
            problems.append(
                f"init_scale must be <= {LIMITS['init_scale']:g}, got {self.init_scale}"
            )
        return problems

    def _setting_problems(self) -> list[str]:
        """Widths, dtypes, the optimiser and the schedule."""
        problems = []
        if self.widths is not None and len(self.widths) != self.depth - 1:
            problems.append(
                f"widths needs depth - 1 = {self.depth - 1} entries, got {len(self.widths)}"
            )
        if min(self.hidden_widths(), default=1) < 1:
            problems.append(f"hidden widths must be >= 1, got {self.hidden_widths()}")
        if self.dtype not in CHOICES["dtype"]:
            problems.append(f"dtype must be 'float64' or 'float32', got {clip(repr(self.dtype))}")
        if self.features_dtype not in (None, *CHOICES["features_dtype"]):
            problems.append(
                f"features_dtype must be float64/32/16, got {clip(repr(self.features_dtype))}"
            )
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.kappa is not None and self.kappa <= 0:
            problems.append(f"kappa must be > 0, got {self.kappa}")
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        if self.batch_size < 0:
            problems.append(f"batch_size must be >= 0 (0 = full batch), got {self.batch_size}")
        if self.epochs < 0:
            problems.append(f"epochs must be >= 0, got {self.epochs}")
        if self.step_every < 0:
            problems.append(f"step_every must be >= 0 (0 = epochs // 3), got {self.step_every}")
        if self.save_every < 1:
            problems.append(f"save_every must be >= 1, got {self.save_every}")
        if self.schedule not in CHOICES["schedule"]:
            problems.append(f"schedule must be one of {SCHEDULES}, got {clip(repr(self.schedule))}")
        if self.init_scale <= 0:
            problems.append(f"init_scale must be > 0, got {self.init_scale}")
        # every schedule's learning rate stays in [lr_min, lr] (or (0, lr] for step): a
        # negative one climbs the loss, a growing one is no decay (both ran silently)
        if not 0 < self.gamma <= 1:
            problems.append(f"gamma must be in (0, 1] (a decay factor), got {self.gamma}")
        if not 0 <= self.lr_min <= self.lr:
            problems.append(f"lr_min must be in [0, lr = {self.lr}], got {self.lr_min}")
        if self.compression not in (None, *CHOICES["compression"]):
            problems.append(
                f"compression must be None, 'gzip' or 'lzf', got {clip(repr(self.compression))}"
            )
        return problems

    def _data_problems(self) -> list[str]:
        """The class counts, the generated data and the task."""
        problems = []
        if self.class_counts is not None:
            counts = tuple(self.class_counts)
            if len(counts) < 2 or any(int(n) != n or n < 1 for n in counts):
                problems.append(
                    f"class_counts needs >= 2 whole counts >= 1 (one per class), "
                    f"got {clip(str(counts))}"
                )
            elif len(counts) > LIMITS["n_classes"] or max(counts) > LIMITS["n_per_class"]:
                problems.append(
                    f"class_counts needs at most {LIMITS['n_classes']} counts of at most "
                    f"{LIMITS['n_per_class']} (as n_classes and n_per_class), got "
                    f"{len(counts)} counts up to {clip(str(max(counts)))}"
                )
            elif self.dataset == "gaussian" and len(counts) != self.n_classes:
                problems.append(
                    f"class_counts has {len(counts)} entries for n_classes = {self.n_classes}"
                )
            elif self.task == "regression":
                problems.append("class_counts applies to classification only")
        if self.dataset == "gaussian" and (
            self.n_classes < 2
            or self.n_per_class < 1
            or self.input_dim < 1
            or self.n_test_per_class < 0
        ):
            problems.append("gaussian data need n_classes >= 2, n_per_class >= 1, input_dim >= 1")
        if self.task not in CHOICES["task"]:
            problems.append(
                f"task must be 'classification' or 'regression', got {clip(repr(self.task))}"
            )
        if self.task == "regression":
            if self.dataset != "gaussian":
                problems.append("task 'regression' trains on generated gaussian inputs only")
            if not 1 <= self.n_targets <= LIMITS["n_targets"]:
                problems.append(
                    f"n_targets must be in [1, {LIMITS['n_targets']}], got {self.n_targets}"
                )
            if self.target_map not in CHOICES["target_map"]:
                problems.append(
                    f"target_map must be 'linear' or 'smooth', got {clip(repr(self.target_map))}"
                )
        return problems

    def check_size(self, input_dim: int, n_classes: int, n_samples: int | None = None) -> None:
        """Raise :class:`~ncinspect.errors.UsageError` when the network has too many weights,
        or (given ``n_samples``, train and test together) when the data and the activations
        of every layer would hold more than ``LIMITS["values"]`` values."""
        if n_samples is not None:
            values = n_samples * (input_dim + sum(self.hidden_widths()) + n_classes)
            if values > LIMITS["values"]:
                raise UsageError(
                    f"invalid training config: {n_samples} samples x ({input_dim} inputs + "
                    f"{sum(self.hidden_widths())} hidden units + {n_classes} outputs) = "
                    f"{values:.3g} values of data and activations, more than the limit of "
                    f"{LIMITS['values']:.3g}; use fewer samples, inputs or hidden units"
                )
        n_weights = self.parameter_count(input_dim, n_classes)
        if n_weights > LIMITS["parameters"]:
            raise UsageError(
                f"invalid training config: the network would have {n_weights} weights "
                f"({input_dim} inputs, widths {self.hidden_widths()[:3]}..., {n_classes} "
                f"classes), more than the limit of {LIMITS['parameters']}; lower the width "
                "or the depth"
            )

    def parameter_count(self, input_dim: int, n_classes: int) -> int:
        """Number of weights of the network for ``input_dim`` inputs and ``n_classes`` outputs."""
        sizes = (input_dim, *self.hidden_widths(), n_classes)
        return sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def to_dict(self) -> dict:
        """Plain dict of every field (for metadata and JSON)."""
        return asdict(self)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def field_help() -> dict[str, str]:
    """Each field of :class:`TrainConfig` -> its comment in this file (the help text of the
    ``ncinspect train`` option that sets it).

    The comment is the one at the end of the field's line, after the comment lines right
    above it (section rules such as ``# data ----`` excluded), with a full stop added.
    """
    import io
    import tokenize
    from dataclasses import fields
    from pathlib import Path

    names = {f.name for f in fields(TrainConfig)}
    text = Path(__file__).read_text(encoding="utf-8")
    above: list[str] = []
    line_of: dict[int, str] = {}  # line number -> the field defined there
    trailing: dict[int, str] = {}
    comments_above: dict[str, list[str]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        row = tok.start[0]
        if tok.type == tokenize.COMMENT:
            body = tok.string.lstrip("#").strip()
            if row in line_of:
                trailing[row] = body
            elif not body.endswith("-----"):
                above.append(body)
        elif tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in names:
            if row not in line_of:
                line_of[row] = tok.string
                comments_above[tok.string] = above
            above = []
        elif tok.type == tokenize.NL and tok.line.strip() == "":
            above = []
    out = {}
    for row, name in line_of.items():
        parts = [*comments_above.get(name, []), trailing.get(row, "")]
        words = " ".join(p for p in parts if p).strip()
        if words:
            out[name] = words if words.endswith(".") else words + "."
    return out
