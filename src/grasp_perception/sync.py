"""Pair two message streams by header stamp (exact, or within a tolerance), with bounded caches."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

#: Messages kept per stream while waiting for a partner.
DEFAULT_CACHE_SIZE = 10


class StampSynchronizer:
    """Match items of two streams ("a", "b") whose stamps agree within ``tolerance_ns``.

    Each call to :meth:`add` either returns the completed pair (the partner with the nearest
    stamp) or caches the item. Each stream keeps at most ``cache_size`` items (oldest dropped);
    a pair also drops every cached item older than it (a stream never goes back in time).
    """

    def __init__(self, tolerance_ns: int = 0, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        """Args: tolerance_ns: largest stamp difference paired, ns (0 = exact); cache_size: >= 1."""
        if tolerance_ns < 0 or cache_size < 1:
            raise ValueError(f"tolerance_ns must be >= 0 and cache_size >= 1, got {tolerance_ns}, {cache_size}")
        self.tolerance_ns = int(tolerance_ns)
        self.cache_size = int(cache_size)
        self._cache: dict[str, OrderedDict[int, Any]] = {"a": OrderedDict(), "b": OrderedDict()}

    def add(self, stream: str, stamp_ns: int, item: Any) -> tuple[int, Any, Any] | None:
        """Offer an item of ``stream`` ("a" or "b") stamped ``stamp_ns``.

        Returns:
            ``(stamp_ns, item_a, item_b)`` when a partner is found (the stamp of the "a" item),
            else None.
        """
        other = self._cache["b" if stream == "a" else "a"]
        partner = None
        if stamp_ns in other:
            partner = stamp_ns
        elif self.tolerance_ns > 0 and other:
            nearest = min(other, key=lambda s: abs(s - stamp_ns))
            if abs(nearest - stamp_ns) <= self.tolerance_ns:
                partner = nearest
        if partner is None:
            own = self._cache[stream]
            own[stamp_ns] = item
            own.move_to_end(stamp_ns)
            while len(own) > self.cache_size:
                own.popitem(last=False)
            return None
        partner_item = other.pop(partner)
        oldest_kept = min(stamp_ns, partner)
        for cache in self._cache.values():
            for old in [s for s in cache if s < oldest_kept]:
                del cache[old]
        if stream == "a":
            return stamp_ns, item, partner_item
        return partner, partner_item, item

    def clear(self) -> None:
        """Forget every cached item."""
        for cache in self._cache.values():
            cache.clear()
