"""The in-loop Meter: the two passes fed batch by batch, states where the tensors are."""

from __future__ import annotations

from .meter import Meter

__all__ = ["Meter"]
