"""Gateway settings: one declaration, read from ``bundle serve`` flags or ``BUNDLEGATE_*`` variables.

``Settings`` is a frozen dataclass built where the gateway starts and passed down; nothing here reads
the environment at import time. ``FLAGS`` declares, once, each setting's command-line flag and help;
its environment variable is ``BUNDLEGATE_`` + the field name in upper case (``env_name``). The CLI
builds its options from ``FLAGS`` (click reads the flag, else the variable, and ``--help`` names it);
``Settings.from_env`` reads the same variables for ``uvicorn --factory bundlegate.http.app:create_app``::

    settings = Settings.from_env(os.environ)                 # BUNDLEGATE_PORT=9000 → port=9000
    settings = settings.replace(port=8081, keys_file=path)   # a copy with some values changed

A value that cannot be parsed, or is out of range, raises ``InvalidSetting`` naming the variable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bundlegate.errors import InvalidSetting

ENV_PREFIX = "BUNDLEGATE_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


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
    request_max_rows: int = 10_000
    max_string_length: int = 1024
    max_json_depth: int = 32
    rate_limit_rps: float = 0.0  # per key, for the whole server (workers share it); 0 = off
    # what one connection may send before the app sees a request (bundlegate.server.wire)
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
    drain_delay_s: float = 0.0
    drain_timeout_s: float = 20.0
    ort_threads: int = 1
    # rollout: loading on demand, a memory budget, readiness
    lazy: bool = False
    memory_budget_mb: int = 0  # 0 = no budget
    require_models: str = ""  # comma-separated names /readyz waits for
    # bundle admission (bundlegate.admission)
    max_model_bytes: int = 1024 * 1024 * 1024
    trusted_keys: Path | None = None  # ed25519 public keys; then every bundle must be signed
    onnx_domains: str = ""  # operator domains admitted beyond the standard ones, comma-separated
    # operations
    metrics_port: int | None = None  # /metrics on its own listener; then not on the data port
    max_tracebacks_per_minute: int = 10  # more unhandled errors are counted, not logged
    # TLS (both files or neither) and browsers: origins allowed by CORS, comma-separated, "*" for any
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    cors_origins: str = ""
    # logging
    access_log: bool = True
    log_level: str = "info"
    # monitoring (bundlegate.monitoring); all off by default
    payload_log: str | None = None  # a file, or "-" for stdout
    payload_sample_rate: float = 1.0
    payload_log_max_bytes: int = 100 * 1024 * 1024
    payload_log_queue: int = 10_000
    payload_log_nice: int = 19  # the writer process's CPU priority: 19 yields to serving, 0 competes
    drift: bool = False
    drift_window_rows: int = 10_000
    drift_window_s: float = 3600.0
    drift_max_rows_per_s: float = 2000.0  # above it drift counts an even sample of requests; 0: all
    feedback: bool = False
    feedback_ttl_s: float = 3600.0
    feedback_max_rows: int = 1_000_000
    feedback_window: int = 1000
    tracing: bool = False

    def __post_init__(self) -> None:
        _check_range(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Defaults overridden by every ``BUNDLEGATE_<FIELD>`` present in ``environ``."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = env_name(f.name)
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

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def request_timeout_s(self) -> float:
        return self.request_timeout_ms / 1000.0

    @property
    def extra_onnx_domains(self) -> tuple[str, ...]:
        return tuple(d.strip() for d in self.onnx_domains.split(",") if d.strip())

    @property
    def batch_max_delay_s(self) -> float:
        return self.batch_max_delay_ms / 1000.0

    @property
    def required_models(self) -> tuple[str, ...]:
        """``require_models`` as names (empty: at least one model, when the repository has bundles)."""
        return tuple(n.strip() for n in self.require_models.split(",") if n.strip())


def env_name(field_name: str) -> str:
    """The environment variable of a setting: ``port`` → ``BUNDLEGATE_PORT``."""
    return ENV_PREFIX + field_name.upper()


@dataclass(frozen=True, slots=True)
class Flag:
    """How ``bundle serve`` takes one setting: its flag(s) and a line of help."""

    field: str
    flag: str  # "--port", or "--access-log/--no-access-log" for a boolean with both forms
    help: str


# Every setting but the repository (the command's argument, a directory or a URL that becomes
# ``repository_url``), in the order ``--help`` lists them.
FLAGS: tuple[Flag, ...] = (
    Flag("host", "--host", "Interface to bind (default 127.0.0.1)."),
    Flag("port", "--port", "Port (default 8080)."),
    Flag("keys_file", "--keys", "Keys file from `bundle keys create`."),
    Flag(
        "insecure_no_auth",
        "--insecure-no-auth",
        "Serve without API keys, on 127.0.0.1 only. Development only.",
    ),
    Flag("workers", "--workers", "Worker processes (default 1)."),
    Flag("allow_pickle", "--allow-pickle", "Load runtime: sklearn bundles (pickles) made with this sklearn."),
    Flag("max_body_bytes", "--max-body-bytes", "Largest request body in bytes (default 16 MiB)."),
    Flag("request_max_rows", "--request-max-rows", "Most rows one request may carry (default 10000)."),
    Flag("max_string_length", "--max-string-length", "Longest string feature value (default 1024)."),
    Flag("max_json_depth", "--max-json-depth", "Deepest JSON nesting (default 32)."),
    Flag(
        "rate_limit_rps",
        "--rate-limit-rps",
        "Requests per second per key, across all workers; 0 = off (default).",
    ),
    Flag("batch_max_rows", "--batch-max-rows", "Most rows in one onnxruntime call (default 256)."),
    Flag(
        "batch_max_delay_ms", "--batch-max-delay-ms", "Longest wait to fill an onnxruntime call (default 1)."
    ),
    Flag("queue_max_rows", "--queue-max-rows", "Rows waiting per model version, then 503 (default 20000)."),
    Flag("request_timeout_ms", "--request-timeout-ms", "Inference deadline, then 504 (default 10000)."),
    Flag("reload_interval_s", "--reload-interval-s", "Re-scan the repository every N seconds (0 = off)."),
    Flag(
        "drain_delay_s",
        "--drain-delay-s",
        "After SIGTERM, /readyz answers 503 and the listener keeps accepting this long (default 0).",
    ),
    Flag("drain_timeout_s", "--drain-timeout-s", "Longest wait for in-flight work at shutdown (default 20)."),
    Flag("ort_threads", "--ort-threads", "onnxruntime intra-op threads per session (default 1)."),
    Flag("lazy", "--lazy", "Load a model version on its first request instead of at startup."),
    Flag(
        "memory_budget_mb",
        "--memory-budget-mb",
        "Evict least recently used unpinned versions above this many MB of bundle files, per worker "
        "process (0 = off).",
    ),
    Flag(
        "require_models",
        "--require-models",
        "Comma-separated models /readyz waits for (default: any one, when there are bundles).",
    ),
    Flag("max_header_bytes", "--max-header-bytes", "Largest request head, then 431 (default 32 KiB)."),
    Flag("max_headers", "--max-headers", "Most header fields in a request, then 431 (default 100)."),
    Flag("head_timeout_s", "--head-timeout-s", "Time to send a request head, then 408 (default 10)."),
    Flag("body_timeout_s", "--body-timeout-s", "Time to send a request body, then 408 (default 60)."),
    Flag("metrics_port", "--metrics-port", "Serve /metrics on this port, and not on the data port."),
    Flag("max_model_bytes", "--max-model-bytes", "Largest file a bundle may hold (default 1 GiB)."),
    Flag("trusted_keys", "--trusted-keys", "Serve only bundles signed by these ed25519 keys."),
    Flag("onnx_domains", "--onnx-domains", "ONNX operator domains admitted beyond the standard ones."),
    Flag(
        "max_tracebacks_per_minute",
        "--max-tracebacks-per-minute",
        "Unhandled errors logged with a traceback a minute; the rest are counted (default 10).",
    ),
    Flag("ssl_certfile", "--ssl-certfile", "TLS certificate, PEM (with --ssl-keyfile; default: plain HTTP)."),
    Flag("ssl_keyfile", "--ssl-keyfile", "TLS private key, PEM (with --ssl-certfile)."),
    Flag("cors_origins", "--cors-origins", "Origins browsers may call from, comma-separated; * any (off)."),
    Flag("access_log", "--access-log/--no-access-log", "JSON lines access log on stderr (default on)."),
    Flag("log_level", "--log-level", "Log level (default info)."),
    Flag("s3_endpoint_url", "--s3-endpoint-url", "S3-compatible endpoint of s3:// repositories (AWS)."),
    Flag("cache_dir", "--cache-dir", "Where an s3:// repository is mirrored (default ~/.cache/bundlegate)."),
    Flag("payload_log", "--payload-log", "Log sampled requests as JSON lines to this file, - for stdout."),
    Flag("payload_sample_rate", "--payload-sample-rate", "Share of requests logged (default 1)."),
    Flag("payload_log_max_bytes", "--payload-log-max-bytes", "Rotate the log at this size (100 MiB)."),
    Flag("payload_log_queue", "--payload-log-queue", "Requests waiting to be logged, then dropped (10000)."),
    Flag("payload_log_nice", "--payload-log-nice", "Nice of the log's writer process, 0-19 (19: yields)."),
    Flag("drift", "--drift/--no-drift", "Drift of inputs and predictions against the bundles' reference."),
    Flag("drift_window_rows", "--drift-window-rows", "Rows in the drift window (default 10000)."),
    Flag("drift_window_s", "--drift-window-s", "Oldest rows in the drift window, seconds (default 3600)."),
    Flag("drift_max_rows_per_s", "--drift-max-rows-per-s", "Above, drift samples requests (2000; 0: all)."),
    Flag("feedback", "--feedback/--no-feedback", "Keep predictions for POST .../feedback (live accuracy)."),
    Flag("feedback_ttl_s", "--feedback-ttl-s", "How long predictions wait for feedback (default 3600 s)."),
    Flag("feedback_max_rows", "--feedback-max-rows", "Most predicted rows kept for feedback (1000000)."),
    Flag("feedback_window", "--feedback-window", "Rows with feedback live accuracy is over (1000)."),
    Flag("tracing", "--tracing/--no-tracing", "OpenTelemetry spans (needs the tracing extra)."),
)


# Field types as parsers; kept here rather than read from annotations (they are strings under
# ``from __future__ import annotations``).
_INTS = frozenset(
    {
        "port",
        "workers",
        "max_body_bytes",
        "request_max_rows",
        "max_string_length",
        "max_json_depth",
        "batch_max_rows",
        "queue_max_rows",
        "request_timeout_ms",
        "ort_threads",
        "memory_budget_mb",
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
        "drain_delay_s",
        "drain_timeout_s",
        "head_timeout_s",
        "body_timeout_s",
    }
)
_BOOLS = frozenset({"insecure_no_auth", "allow_pickle", "access_log", "lazy", "drift", "feedback", "tracing"})
_OPTIONAL_STRS = frozenset({"payload_log"})
_INTS |= {"payload_log_max_bytes", "payload_log_queue", "payload_log_nice", "drift_window_rows"}
_INTS |= {"feedback_max_rows", "feedback_window"}
_FLOATS |= {"payload_sample_rate", "drift_window_s", "drift_max_rows_per_s", "feedback_ttl_s"}
_PATHS = frozenset({"repository"})
_OPTIONAL_PATHS = frozenset({"keys_file", "trusted_keys", "ssl_certfile", "ssl_keyfile", "cache_dir"})

# (minimum, maximum) per numeric field
_RANGES: dict[str, tuple[float, float]] = {
    "port": (0, 65535),
    "workers": (1, 64),
    "max_body_bytes": (1024, 2**40),
    "request_max_rows": (1, 10_000_000),
    "max_string_length": (1, 2**24),
    "max_json_depth": (2, 256),
    "rate_limit_rps": (0, 1e9),
    "batch_max_rows": (1, 1_000_000),
    "batch_max_delay_ms": (0, 10_000),
    "queue_max_rows": (1, 100_000_000),
    "request_timeout_ms": (1, 3_600_000),
    "reload_interval_s": (0, 86_400),
    "drain_delay_s": (0, 3600),
    "drain_timeout_s": (0, 3600),
    "memory_budget_mb": (0, 2**30),
    "ort_threads": (0, 1024),
    "max_header_bytes": (1024, 16 * 1024 * 1024),
    "max_headers": (8, 10_000),
    "head_timeout_s": (0.05, 3600),
    "body_timeout_s": (0.05, 3600),
    "max_model_bytes": (1024, 2**40),
    "max_tracebacks_per_minute": (0, 1_000_000),
    "payload_sample_rate": (0, 1),
    "payload_log_max_bytes": (1024, 2**50),
    "payload_log_queue": (1, 10_000_000),
    "payload_log_nice": (0, 19),
    "drift_window_rows": (1, 100_000_000),
    "drift_window_s": (1, 30 * 86_400),
    "drift_max_rows_per_s": (0, 1e9),
    "feedback_ttl_s": (1, 30 * 86_400),
    "feedback_max_rows": (1, 1_000_000_000),
    "feedback_window": (1, 10_000_000),
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
    if field_name in ("repository_url", "s3_endpoint_url"):
        return text or None
    if field_name in _OPTIONAL_STRS:
        return text or None
    return text


def _check_range(s: Settings) -> None:
    for name, (lo, hi) in _RANGES.items():
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            env = env_name(name)
            raise InvalidSetting(f"{name} ({env}) must be a number from {lo:g} to {hi:g}, got {value!r}")
    for name, (lo, hi) in _OPTIONAL_RANGES.items():
        value = getattr(s, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            env = env_name(name)
            raise InvalidSetting(f"{name} ({env}) must be a number from {lo} to {hi} or empty, got {value!r}")
    if s.log_level not in LOG_LEVELS:
        raise InvalidSetting(f"log_level (BUNDLEGATE_LOG_LEVEL) must be one of {', '.join(LOG_LEVELS)}")
    if not s.host:
        raise InvalidSetting("host (BUNDLEGATE_HOST) must not be empty")
    if (s.ssl_certfile is None) != (s.ssl_keyfile is None):
        raise InvalidSetting(
            "TLS needs both --ssl-certfile and --ssl-keyfile (BUNDLEGATE_SSL_CERTFILE/KEYFILE)"
        )
    if s.workers > 1 and (s.drift or s.feedback or s.payload_log):  # each process: own window, store, log
        msg = "--drift, --feedback and --payload-log need --workers 1 (scale out with more gateways instead)"
        raise InvalidSetting(msg)


def value_kind(field_name: str) -> str:
    """What a setting holds: ``int``, ``float``, ``bool``, ``path`` or ``str`` (the CLI's option types)."""
    if field_name in _INTS or field_name in _OPTIONAL_INTS:
        return "int"
    if field_name in _FLOATS:
        return "float"
    if field_name in _BOOLS:
        return "bool"
    if field_name in _PATHS or field_name in _OPTIONAL_PATHS:
        return "path"
    return "str"
