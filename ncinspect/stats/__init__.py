"""Statistics: every mergeable statistic the metrics need, summed over chunks of rows.

``passes`` (pass 1 and pass 2 on the host), ``blocks`` and ``kernel`` (their numpy kernels),
``xp`` and ``device`` (the same passes written against the array namespace, states on the
arrays' device), ``protocol`` (declared reductions: empty, merge, state dict, all-reduce),
``namespace`` (array-namespace lookup and scatter-adds), ``theory``, ``pairs`` (directional
pair tables), ``spectra`` (d x d sums) and ``regression`` (NRC moments).
"""

from __future__ import annotations

from .passes import FirstPass, Geometry, SecondPass

__all__ = ["FirstPass", "Geometry", "SecondPass"]
