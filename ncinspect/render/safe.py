"""Text from a file made safe to show (:mod:`ncinspect.text` holds it; the renderers'
name for it)."""

from __future__ import annotations

from ..text import markup, mpl_text, plain, xml_text

__all__ = ["plain", "markup", "xml_text", "mpl_text"]
