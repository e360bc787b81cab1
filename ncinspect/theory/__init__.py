"""The seed theory as diagnostics: predicted against measured quantities (spec/theory.md).

For a bias-free ReLU network ``f(x) = W_L s(... s(W_1 x))`` trained on
``(kappa/2) sum_i ||y_i - f(x_i)||^2 + (lambda/2) sum_l ||W_l||_F^2`` with one-hot y, and
``r_i = y_i - f(x_i)``, ``h_i`` the penultimate features (the input of W_L),
``Lambda = lambda / (kappa N)``, every critical point satisfies

- stationarity of the last layer: ``lambda W_L = kappa sum_i r_i h_i^T``;
- balancedness: ``lambda ||W_l||_F^2 = kappa sum_i <r_i, f(x_i)>`` for every layer l.

When the training outputs are class-constant **and** class-symmetric (true class ``1 - eps1``,
every other class ``eps2``, i.e. ``sqi_spread = 0``) and the classes are balanced, the closed
forms below hold as well, with ``mu_G`` the mean of the class means and
``Sigma_B = (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T``:

- ``W_L^c = [(eps1 + eps2)(mu_c - mu_G) + delta mu_G] / (Lambda C)``, ``delta = eps1 - (C-1) eps2``;
- ``||W_L^c||^2 = [eps1 (1 - eps1) - (C-1) eps2^2] / (Lambda C)`` and
  ``<W_L^c, W_L^c'> = eps2 [2 eps1 - 1 - (C-2) eps2] / (Lambda C)``;
- row-centred ``W_L = (eps1 + eps2) (M - mu_G) / (Lambda C)``;
- ``||W_l||_F^2 = [eps1 (1 - eps1) - (C-1) eps2^2] / Lambda`` for every l;
- ``delta = Lambda / (Lambda + ||mu_G||^2)`` and
  ``eps1 + eps2 = Lambda (C-1) / (Lambda (C-1) + Tr Sigma_B)``.

Class-constant outputs alone are not enough: with class-constant outputs the C x C output
pattern is ``F = (Lambda C I + G)^{-1} G`` with G the Gram matrix of the class means, which has
the symmetric form only when G does. On other critical points the residuals of the closed
forms measure how far the outputs are from that symmetric class-constant pattern, while the
two identities above still hold exactly.

The package: :mod:`~ncinspect.theory.constants` reads lambda, kappa, N and Lambda from the
metadata; :mod:`~ncinspect.theory.identities` holds the lines above as a table (key, group,
quantity, requires, compute) evaluated on a :class:`~ncinspect.theory.context.Context`;
:func:`theory_diagnostics` turns them into lines of predicted value, measured value and
relative error; :mod:`~ncinspect.theory.run` runs them on snapshots, files and arrays, with
the sums over samples (:class:`TheoryPass`) riding pass 2 of the analysis.
"""

from __future__ import annotations

from ..stats.theory import TheoryPass
from .constants import HOW_TO_RECORD, Constants, resolve_constants
from .context import CRIT, SYM, layer_norms_sq, relative_error
from .diagnostics import theory_diagnostics, tolerance_failures
from .identities import IDENTITIES, LINE_KEYS
from .run import analyze_theory, read_params, theory_applies, theory_arrays, theory_file

__all__ = [
    "CRIT",
    "SYM",
    "Constants",
    "HOW_TO_RECORD",
    "IDENTITIES",
    "LINE_KEYS",
    "TheoryPass",
    "analyze_theory",
    "layer_norms_sq",
    "read_params",
    "relative_error",
    "resolve_constants",
    "theory_applies",
    "theory_arrays",
    "theory_diagnostics",
    "theory_file",
    "tolerance_failures",
]
