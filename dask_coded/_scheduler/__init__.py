"""The scheduler side of coded products: one module per concern (:mod:`.groups`,
:mod:`.pins`, :mod:`.residency`, :mod:`.observations`), their records
(:mod:`.records`), and the plugin that forwards the scheduler's hooks to them
(:mod:`.plugin`)."""

from __future__ import annotations

from .observations import Observations
from .plugin import FirstKPlugin
from .records import CallRecord, CodedBlock, Product, ProductGroup, PrunedDecode

__all__ = ["CallRecord", "CodedBlock", "FirstKPlugin", "Observations", "Product",
           "ProductGroup", "PrunedDecode"]
