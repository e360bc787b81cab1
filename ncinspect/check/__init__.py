"""``ncinspect check``: a CI gate on the metrics of dumped checkpoints.

- :mod:`.rules`: :class:`Rule` (thresholds, per-class worst case, trends) and its parsing;
- :mod:`.config`: the TOML tables (``ncinspect.toml`` ``[check]``, ``pyproject.toml``
  ``[tool.ncinspect.check]``) found from the current folder upwards, or ``--config``;
- :mod:`.evaluate`: outcomes of rules on analysed snapshots (no IO);
- :mod:`.run`: :func:`run_check`, which opens a dump and analyses what the rules need;
- :mod:`.aggregate`: rules on several runs (seeds), on the mean or an interval's bound.

:mod:`ncinspect.render.check` formats the results.
"""

from __future__ import annotations

from .config import CONFIG_FILES, MAX_CONFIG_BYTES, find_config, load_config, resolve_config
from .evaluate import (
    LAYER_CHOICES,
    CheckResult,
    Outcome,
    evaluate,
    select_last,
    select_layer,
    trajectories,
)
from .rules import (
    PER_CLASS_PREFIX,
    THRESHOLD_KINDS,
    TREND_KINDS,
    TREND_OPTIONS,
    CheckConfig,
    Rule,
    command_line_rules,
    merge_rules,
    parse_threshold,
    parse_trend,
    rules_from_table,
)
from .run import run_check

__all__ = [
    "THRESHOLD_KINDS",
    "TREND_KINDS",
    "TREND_OPTIONS",
    "PER_CLASS_PREFIX",
    "CONFIG_FILES",
    "MAX_CONFIG_BYTES",
    "LAYER_CHOICES",
    "Rule",
    "CheckConfig",
    "Outcome",
    "CheckResult",
    "parse_threshold",
    "parse_trend",
    "rules_from_table",
    "find_config",
    "load_config",
    "resolve_config",
    "command_line_rules",
    "merge_rules",
    "select_last",
    "select_layer",
    "trajectories",
    "evaluate",
    "run_check",
]
