"""A model's default route when ``serving.json`` splits it by weight or shadows it: ``Rollout``.

    rollout = Rollout(config)                      # config.traffic {"3": 90, "4": 10}, config.shadow
    version = rollout.pick(b"customer-17")        # the same key always lands on the same version
    version = rollout.pick(None)                  # no key: a weighted random draw

A routing key is hashed (BLAKE2b, 64 bits) to a point in [0, 1) on the cumulative weights, so a key
keeps its version as long as the weights stay the same. The registry builds a ``Rollout`` only for
models whose ``serving.json`` has ``traffic`` or ``shadow``; other models take the plain default.
"""

from __future__ import annotations

import bisect
import hashlib
import random

from bundlegate.serving import ServingConfig, Shadow

_SCALE = float(2**64)


class Rollout:
    """See the module docstring."""

    __slots__ = ("_bounds", "_versions", "shadow")

    def __init__(self, config: ServingConfig) -> None:
        weights = [(int(v), float(w)) for v, w in sorted(config.traffic.items(), key=lambda i: int(i[0]))]
        weights = [(v, w) for v, w in weights if w > 0]
        total = sum(w for _, w in weights)
        self._versions = [v for v, _ in weights]
        self._bounds: list[float] = []
        running = 0.0
        for _, w in weights:
            running += w / total
            self._bounds.append(running)
        self.shadow: Shadow | None = config.shadow

    def pick(self, routing_key: bytes | None) -> int | None:
        """The version for one request (None: no split, take the default)."""
        if not self._versions:
            return None
        if routing_key is None:
            point = random.random()
        else:
            digest = hashlib.blake2b(routing_key, digest_size=8).digest()
            point = int.from_bytes(digest, "big") / _SCALE
        i = bisect.bisect_right(self._bounds, point)
        return self._versions[min(i, len(self._versions) - 1)]
