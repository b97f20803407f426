"""Gateway settings: defaults in code, ``BUNDLEGATE_*`` environment variables, ``bundle serve`` flags.

``Settings`` is a frozen dataclass built where the gateway starts (``create_app``, the CLI) and passed
down; nothing here reads the environment at import time::

    settings = Settings.from_env(os.environ)                 # BUNDLEGATE_PORT=9000 → port=9000
    settings = settings.replace(port=8081, keys_file=path)   # CLI flags override the environment

Every field is one row of the settings table in docs/architecture.md; the environment variable is
``BUNDLEGATE_`` + the field name in upper case. A value that cannot be parsed, or is out of range,
raises ``InvalidSetting`` naming the variable (the CLI prints it as a one-line error).

    BundlegateError
    └── InvalidSetting     a setting that cannot be parsed or is out of range   code: invalid_setting
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bundlegate.errors import BundlegateError

ENV_PREFIX = "BUNDLEGATE_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class InvalidSetting(BundlegateError):
    code = "invalid_setting"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``bundle serve`` can be told. Limits protect the gateway from one request; batching
    settings trade latency for throughput; see docs/architecture.md for the table."""

    repository: Path = Path("bundles")
    # an object-storage repository (s3://bucket/prefix) mirrored into cache_dir; BUNDLEGATE_REPOSITORY
    # may name one too (bundlegate.objectstore)
    repository_url: str | None = None
    s3_endpoint_url: str | None = None  # an S3-compatible store instead of AWS
    cache_dir: Path | None = None  # where a repository_url is mirrored (default: the user's cache)
    host: str = "127.0.0.1"
    port: int = 8080
    keys_file: Path | None = None
    insecure_no_auth: bool = False
    workers: int = 1
    allow_pickle: bool = False
    # request limits (DESIGN.md §4)
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch_rows: int = 10_000
    max_string_length: int = 1024
    max_json_depth: int = 32
    rate_limit_rps: float = 0.0  # per key; 0 = off
    # batching and deadlines
    batch_max_rows: int = 256
    batch_max_delay_ms: float = 1.0
    queue_max_rows: int = 20_000
    request_timeout_ms: int = 10_000
    # lifecycle
    reload_interval_s: float = 0.0
    drain_timeout_s: float = 20.0
    ort_threads: int = 1
    # logging
    access_log: bool = True
    log_level: str = "info"

    def __post_init__(self) -> None:
        _check_range(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Defaults overridden by every ``BUNDLEGATE_<FIELD>`` present in ``environ``."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            raw = environ.get(name)
            if raw is not None:
                values[f.name] = _parse(name, f.name, raw)
        repository = environ.get(ENV_PREFIX + "REPOSITORY", "").strip()
        if "://" in repository:  # an object-storage URL, not a directory
            values["repository_url"] = repository
            del values["repository"]
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (``None`` values are ignored: a flag that was not given)."""
        given = {k: v for k, v in changes.items() if v is not None}
        unknown = set(given) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        return dataclasses.replace(self, **given)

    def to_env(self) -> dict[str, str]:
        """These settings as ``BUNDLEGATE_*`` variables: ``from_env(s.to_env()) == s``. ``bundle serve``
        hands its settings to uvicorn's worker processes this way."""
        env: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            env[ENV_PREFIX + f.name.upper()] = text
        return env

    @property
    def request_timeout_s(self) -> float:
        return self.request_timeout_ms / 1000.0

    @property
    def batch_max_delay_s(self) -> float:
        return self.batch_max_delay_ms / 1000.0


# Field types as parsers; kept here rather than read from annotations (they are strings under
# ``from __future__ import annotations``).
_INTS = frozenset(
    {
        "port",
        "workers",
        "max_body_bytes",
        "max_batch_rows",
        "max_string_length",
        "max_json_depth",
        "batch_max_rows",
        "queue_max_rows",
        "request_timeout_ms",
        "ort_threads",
    }
)
_FLOATS = frozenset({"rate_limit_rps", "batch_max_delay_ms", "reload_interval_s", "drain_timeout_s"})
_BOOLS = frozenset({"insecure_no_auth", "allow_pickle", "access_log"})
_PATHS = frozenset({"repository"})
_OPTIONAL_PATHS = frozenset({"keys_file", "cache_dir"})

# (minimum, maximum) per numeric field
_RANGES: dict[str, tuple[float, float]] = {
    "port": (0, 65535),
    "workers": (1, 64),
    "max_body_bytes": (1024, 2**40),
    "max_batch_rows": (1, 10_000_000),
    "max_string_length": (1, 2**24),
    "max_json_depth": (2, 256),
    "rate_limit_rps": (0, 1e9),
    "batch_max_rows": (1, 1_000_000),
    "batch_max_delay_ms": (0, 10_000),
    "queue_max_rows": (1, 100_000_000),
    "request_timeout_ms": (1, 3_600_000),
    "reload_interval_s": (0, 86_400),
    "drain_timeout_s": (0, 3600),
    "ort_threads": (0, 1024),
}


def _parse(env_name: str, field_name: str, raw: str) -> Any:
    text = raw.strip()
    try:
        if field_name in _INTS:
            return int(text.replace("_", ""))
        if field_name in _FLOATS:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
    except ValueError:
        raise InvalidSetting(f"{env_name}: expected a number, got {raw[:40]!r}") from None
    if field_name in _BOOLS:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise InvalidSetting(f"{env_name}: expected true or false, got {raw[:40]!r}")
    if field_name in _PATHS:
        return Path(text)
    if field_name in _OPTIONAL_PATHS:
        return Path(text) if text else None
    if field_name == "log_level":
        return text.lower()
    if field_name in ("repository_url", "s3_endpoint_url"):
        return text or None
    return text


def _check_range(s: Settings) -> None:
    for name, (lo, hi) in _RANGES.items():
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            env = ENV_PREFIX + name.upper()
            raise InvalidSetting(f"{name} ({env}) must be a number from {lo:g} to {hi:g}, got {value!r}")
    if s.log_level not in LOG_LEVELS:
        raise InvalidSetting(f"log_level (BUNDLEGATE_LOG_LEVEL) must be one of {', '.join(LOG_LEVELS)}")
    if not s.host:
        raise InvalidSetting("host (BUNDLEGATE_HOST) must not be empty")
