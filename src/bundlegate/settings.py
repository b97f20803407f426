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
    # what one connection may send before the app sees a request (bundlegate.http.wire)
    max_header_bytes: int = 32 * 1024  # request line and headers together; 431 past it
    max_headers: int = 100  # header fields in one request; 431 past it
    head_timeout_s: float = 10.0  # to send a request's line and headers; 408 then close
    body_timeout_s: float = 60.0  # to send a request's body once its headers are in; 408 then close
    # batching and deadlines
    batch_max_rows: int = 256
    batch_max_delay_ms: float = 1.0
    queue_max_rows: int = 20_000
    request_timeout_ms: int = 10_000
    # lifecycle
    reload_interval_s: float = 0.0
    drain_timeout_s: float = 20.0
    ort_threads: int = 1
    # bundle admission (bundlegate.admission)
    max_model_bytes: int = 1024 * 1024 * 1024
    trusted_keys: Path | None = None  # ed25519 public keys; then every bundle must be signed
    onnx_domains: str = ""  # operator domains admitted beyond the standard ones, comma-separated
    # operations
    metrics_port: int | None = None  # /metrics on its own listener; then not on the data port
    max_tracebacks_per_minute: int = 10  # more unhandled errors are counted, not logged
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
    def extra_onnx_domains(self) -> tuple[str, ...]:
        return tuple(d.strip() for d in self.onnx_domains.split(",") if d.strip())

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
        "max_header_bytes",
        "max_headers",
        "max_model_bytes",
        "max_tracebacks_per_minute",
    }
)
_OPTIONAL_INTS = frozenset({"metrics_port"})
_FLOATS = frozenset(
    {
        "rate_limit_rps",
        "batch_max_delay_ms",
        "reload_interval_s",
        "drain_timeout_s",
        "head_timeout_s",
        "body_timeout_s",
    }
)
_BOOLS = frozenset({"insecure_no_auth", "allow_pickle", "access_log"})
_PATHS = frozenset({"repository"})
_OPTIONAL_PATHS = frozenset({"keys_file", "trusted_keys"})

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
    "max_header_bytes": (1024, 16 * 1024 * 1024),
    "max_headers": (8, 10_000),
    "head_timeout_s": (0.05, 3600),
    "body_timeout_s": (0.05, 3600),
    "max_model_bytes": (1024, 2**40),
    "max_tracebacks_per_minute": (0, 1_000_000),
}
_OPTIONAL_RANGES: dict[str, tuple[int, int]] = {"metrics_port": (0, 65535)}


def _parse(env_name: str, field_name: str, raw: str) -> Any:
    text = raw.strip()
    try:
        if field_name in _INTS:
            return int(text.replace("_", ""))
        if field_name in _OPTIONAL_INTS:
            return int(text.replace("_", "")) if text else None
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
    return text


def _check_range(s: Settings) -> None:
    for name, (lo, hi) in _RANGES.items():
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            env = ENV_PREFIX + name.upper()
            raise InvalidSetting(f"{name} ({env}) must be a number from {lo:g} to {hi:g}, got {value!r}")
    for name, (lo, hi) in _OPTIONAL_RANGES.items():
        value = getattr(s, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            env = ENV_PREFIX + name.upper()
            raise InvalidSetting(f"{name} ({env}) must be a number from {lo} to {hi} or empty, got {value!r}")
    if s.log_level not in LOG_LEVELS:
        raise InvalidSetting(f"log_level (BUNDLEGATE_LOG_LEVEL) must be one of {', '.join(LOG_LEVELS)}")
    if not s.host:
        raise InvalidSetting("host (BUNDLEGATE_HOST) must not be empty")
