"""The operator's per-model serving settings: ``<repo>/<name>/serving.json`` (DESIGN.md §2, §5).

    {"default_version": 3, "batch_max_rows": 64, "batch_max_delay_ms": 2,
     "aliases": {"champion": 3, "challenger": 4},
     "traffic": {"3": 90, "4": 10},
     "shadow": {"version": 4, "sample": 0.2},
     "versions": {"latest": 2},          # or a list: [3, 4]
     "pinned": true,
     "payload_sample_rate": 0.1, "payload_mask": ["ssn"]}

Every key is optional. ``default_version`` pins the version ``/v1/models/{name}/predict`` serves;
``traffic`` splits that route by weight (0 to 1e6 each) instead; ``shadow`` scores a sample of it on
another version too; ``aliases`` name versions (``/v1/models/{name}/aliases/{alias}/predict``);
``versions`` limits what loads; ``pinned`` keeps the model's versions resident under
``--memory-budget-mb``; the batching keys override ``--batch-max-rows`` and ``--batch-max-delay-ms``;
``payload_sample_rate`` overrides ``--payload-sample-rate`` and ``payload_mask`` names inputs the
payload log writes as ``"***"``.

The file is validated as a whole: a file that is not JSON, holds an unknown key, a wrong value, or
versions that contradict each other is refused with one reason (``ServingRead.error``), and the
registry keeps the previous good configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from bundlegate.errors import one_line

SERVING_FILE = "serving.json"
# aliases are path segments: the same rule as bundle names
AliasName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
Version = Annotated[int, Field(ge=1, strict=True)]
# bounded: weights near the float limit add up to infinity, and the split to NaN
Weight = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Shadow(_Strict):
    """Score a copy of ``sample`` (0-1) of the default route's requests on ``version``."""

    version: Version
    sample: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0


class Latest(_Strict):
    """Load only the ``latest`` highest versions on disk."""

    latest: Annotated[int, Field(ge=1, strict=True)]


class ServingConfig(_Strict):
    """What one model's ``serving.json`` says (None: not set)."""

    batch_max_rows: Annotated[int, Field(ge=1, strict=True)] | None = None
    batch_max_delay_ms: Annotated[float, Field(ge=0, le=10_000)] | None = None
    default_version: Version | None = None
    aliases: dict[AliasName, Version] = Field(default_factory=dict)
    traffic: dict[str, Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
    shadow: Shadow | None = None
    versions: Latest | list[Version] | None = None
    pinned: bool = False
    payload_sample_rate: Annotated[float, Field(ge=0.0, le=1.0)] | None = None  # --payload-sample-rate
    payload_mask: list[str] | None = None  # inputs the payload log writes as "***"

    @model_validator(mode="after")
    def _consistent(self) -> ServingConfig:
        for key in self.traffic:
            if not key.isdigit() or int(key) < 1 or len(key) > 9:
                raise ValueError(f"traffic: {key[:20]!r} is not a version number")
        if self.traffic and sum(self.traffic.values()) <= 0:
            raise ValueError("traffic: the weights add up to 0")
        if self.traffic and self.default_version is not None:
            raise ValueError("traffic and default_version both choose the default route: keep one")
        if isinstance(self.versions, list):
            allowed = set(self.versions)
            named = {
                "default_version": [self.default_version] if self.default_version else [],
                "aliases": list(self.aliases.values()),
                "traffic": self.traffic_versions,
                "shadow": [self.shadow.version] if self.shadow else [],
            }
            for key, used in named.items():
                outside = sorted(set(used) - allowed)
                if outside:
                    raise ValueError(f"{key} names version {outside[0]}, which versions does not load")
        return self

    @property
    def traffic_versions(self) -> list[int]:
        return [int(k) for k in self.traffic]

    @property
    def routes(self) -> bool:
        """Whether the default route needs more than the default version (a split or a shadow)."""
        return bool(self.traffic) or self.shadow is not None

    def loads(self, on_disk: list[int]) -> set[int]:
        """The versions of ``on_disk`` this configuration lets load."""
        if self.versions is None:
            return set(on_disk)
        if isinstance(self.versions, Latest):
            return set(sorted(on_disk)[-self.versions.latest :])
        return set(on_disk) & set(self.versions)


@dataclass(frozen=True, slots=True)
class ServingRead:
    """One read of ``serving.json``: the configuration, or why the file is refused (``config`` None)."""

    config: ServingConfig | None
    error: str | None = None


DEFAULT = ServingConfig()


def read_serving(model_dir: Path) -> ServingRead:
    """The operator's ``serving.json`` for one model, validated as a whole; no file is the defaults."""
    path = model_dir / SERVING_FILE
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return ServingRead(DEFAULT)
    except OSError as exc:
        return ServingRead(None, f"{SERVING_FILE}: {one_line(exc)}")
    return parse_serving(text)


def parse_serving(text: bytes | str) -> ServingRead:
    """``serving.json``'s bytes as a ``ServingRead`` (the first problem as the reason)."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return ServingRead(None, f"{SERVING_FILE}: not JSON: {one_line(exc)}")
    if not isinstance(raw, dict):
        return ServingRead(None, f"{SERVING_FILE}: expected a JSON object")
    try:
        return ServingRead(ServingConfig.model_validate(raw))
    except ValidationError as exc:
        return ServingRead(None, f"{SERVING_FILE} refused: {_first_problem(exc)}")


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"][:3] if not _is_union_tag(p))[:80]
    kind: Literal["extra_forbidden"] | str = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {where!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _is_union_tag(part: object) -> bool:
    """pydantic names the union member it tried (``Latest``, ``list[...]``) in an error location."""
    return isinstance(part, str) and (part[:1].isupper() or "[" in part)
