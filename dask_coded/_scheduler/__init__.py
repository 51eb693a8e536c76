"""The scheduler side of coded products: state records (:mod:`.state`) and the plugin
(:mod:`.plugin`) that starts a decode once its threshold of products is in memory."""

from __future__ import annotations

from .plugin import FirstKPlugin
from .state import CodedBlock, Observations, ProductGroup, PrunedDecode

__all__ = ["CodedBlock", "FirstKPlugin", "Observations", "ProductGroup", "PrunedDecode"]
