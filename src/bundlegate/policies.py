"""Each model's serving configuration in force: ``ServingPolicies``.

    policies = ServingPolicies(on_refused)       # on_refused(name, refused: bool), e.g. a metric
    config = policies.refresh(name, read_serving(repo / name))   # the configuration now in force
    policies.of(name); policies.error(name)      # what applies; why the file on disk is refused
    policies.rollouts                            # {name: Rollout} for models that split or shadow

A refused ``serving.json`` is logged once per change of its reason and the previous good configuration
stays in force (the defaults when there never was one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bundlegate.errors import NotFound
from bundlegate.rollout import Rollout
from bundlegate.serving import DEFAULT, ServingConfig, ServingRead

log = logging.getLogger("bundlegate.registry")


class ServingPolicies:
    """See the module docstring."""

    def __init__(self, on_refused: Callable[[str, bool], None] | None = None) -> None:
        self.on_refused = on_refused
        self._configs: dict[str, ServingConfig] = {}
        self._errors: dict[str, str] = {}
        self.rollouts: dict[str, Rollout] = {}  # read per request: only models that split or shadow

    def of(self, name: str) -> ServingConfig:
        return self._configs.get(name, DEFAULT)

    def error(self, name: str) -> str | None:
        return self._errors.get(name)

    def refresh(self, name: str, read: ServingRead) -> ServingConfig:
        """Take a new read of ``name``'s file; the configuration in force afterwards."""
        if read.config is None:
            reason = read.error or "serving.json refused"
            if self._errors.get(name) != reason:
                log.error("model %s: %s; the previous configuration stays", name, reason)
                if self.on_refused is not None:
                    self.on_refused(name, True)
            self._errors[name] = reason
            return self.of(name)
        if self._errors.pop(name, None) is not None and self.on_refused is not None:
            self.on_refused(name, False)
        config = self._configs[name] = read.config
        if config.routes:
            self.rollouts[name] = Rollout(config)
        else:
            self.rollouts.pop(name, None)
        return config

    def forget(self, name: str) -> None:
        """The model left the registry."""
        self._configs.pop(name, None)
        self.rollouts.pop(name, None)
        if self._errors.pop(name, None) is not None and self.on_refused is not None:
            self.on_refused(name, False)

    def names(self) -> list[str]:
        return list(self._configs.keys() | self._errors.keys())

    def alias(self, name: str, alias: str) -> int:
        """The version ``alias`` names for ``name``; ``NotFound`` for another alias."""
        version = self.of(name).aliases.get(alias)
        if version is None:
            raise NotFound(f"model {name[:64]!r} has no alias {alias[:64]!r}")
        return version
