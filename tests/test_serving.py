"""serving.json validated as a whole, the traffic split, the retry back-off and the memory budget's
choice of victims."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bundlegate.load_retries import LoadRetries
from bundlegate.residency import Residency
from bundlegate.rollout import Rollout
from bundlegate.serving import parse_serving, read_serving


def test_a_full_serving_json_is_read() -> None:
    read = parse_serving(
        json.dumps(
            {
                "aliases": {"champion": 3, "challenger": 4},
                "traffic": {"3": 90, "4": 10},
                "shadow": {"version": 4, "sample": 0.2},
                "versions": [3, 4],
                "pinned": True,
                "batch_max_rows": 64,
            }
        )
    )
    assert read.error is None
    config = read.config
    assert config is not None
    assert config.aliases == {"champion": 3, "challenger": 4}
    assert config.traffic_versions == [3, 4]
    assert config.shadow is not None
    assert config.shadow.sample == 0.2
    assert config.pinned
    assert config.routes


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"default_versoin": 3}, "unknown key 'default_versoin'"),
        ({"shadow": {"version": 4, "smaple": 0.2}}, "unknown key 'shadow.smaple'"),
        ({"batch_max_rows": 0}, "batch_max_rows"),
        ({"batch_max_rows": True}, "batch_max_rows"),
        ({"default_version": "3"}, "default_version"),
        ({"traffic": {"three": 90}}, "'three' is not a version number"),
        ({"traffic": {"3": 0, "4": 0}}, "the weights add up to 0"),
        ({"traffic": {"3": -1}}, "traffic"),
        ({"traffic": {"3": float("inf"), "4": 1}}, "traffic.3"),
        ({"traffic": {"3": 1e308, "4": 1e308}}, "traffic.3: Input should be less than or equal to 1000000"),
        ({"traffic": {"3": 100}, "default_version": 3}, "keep one"),
        ({"shadow": {"version": 4, "sample": 1.5}}, "shadow.sample"),
        ({"aliases": {"Champion!": 3}}, "aliases"),
        ({"versions": {"latest": 0}}, "versions"),
        ({"versions": [3], "aliases": {"next": 4}}, "aliases names version 4"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_a_wrong_key_or_value_refuses_the_whole_file_with_a_reason(doc: object, reason: str) -> None:
    read = parse_serving(json.dumps(doc))
    assert read.config is None
    assert read.error is not None
    assert reason in read.error


def test_broken_json_and_no_file(tmp_path: Path) -> None:
    assert read_serving(tmp_path).config is not None  # no file: the defaults
    (tmp_path / "serving.json").write_text("{not json")
    read = read_serving(tmp_path)
    assert read.config is None
    assert read.error is not None
    assert "not JSON" in read.error


def test_versions_policy_limits_what_loads() -> None:
    latest = parse_serving('{"versions": {"latest": 2}}').config
    listed = parse_serving('{"versions": [1, 3]}').config
    assert latest is not None
    assert listed is not None
    assert latest.loads([1, 2, 3, 5]) == {3, 5}
    assert listed.loads([1, 2, 3]) == {1, 3}


def _rollout(traffic: dict[str, float]) -> Rollout:
    config = parse_serving(json.dumps({"traffic": traffic})).config
    assert config is not None
    return Rollout(config)


def test_traffic_splits_by_weight_and_a_key_keeps_its_version() -> None:
    rollout = _rollout({"3": 90, "4": 10})
    draws = Counter(rollout.pick(None) for _ in range(20_000))
    assert set(draws) == {3, 4}
    assert 0.08 <= draws[4] / 20_000 <= 0.12
    keyed = {k: rollout.pick(f"user-{k}".encode()) for k in range(5000)}
    assert all(rollout.pick(f"user-{k}".encode()) == v for k, v in keyed.items())
    assert 0.08 <= sum(v == 4 for v in keyed.values()) / 5000 <= 0.12
    assert _rollout({"3": 0, "4": 5}).pick(b"anyone") == 4  # a zero weight never serves


def test_a_failed_version_backs_off_and_is_news_once_per_change(tmp_path: Path) -> None:
    now = [100.0]
    retries = LoadRetries(clock=lambda: now[0])
    (tmp_path / "model.onnx").write_bytes(b"x")
    key = ("m", 1)
    assert retries.due(key, tmp_path)
    assert retries.failed(key, tmp_path, "bad digest")  # news: logged
    assert not retries.due(key, tmp_path)
    now[0] += 1.0
    assert retries.due(key, tmp_path)
    assert not retries.failed(key, tmp_path, "bad digest")  # the same failure: not logged again
    now[0] += 1.0
    assert not retries.due(key, tmp_path)  # the back-off doubled
    (tmp_path / "model.onnx").write_bytes(b"yy")
    assert retries.due(key, tmp_path)  # the files changed: at once
    assert retries.failed(key, tmp_path, "bad digest")  # and a failure of new files is news


def test_the_budget_evicts_least_recently_used_unpinned_versions() -> None:
    residency = Residency(budget_bytes=300)
    for i in range(3):
        residency.add(("m", i), 100)
    residency.used(("m", 0))  # 1 is now the least recently used, then 2
    assert residency.victims(0, lambda k: False) == []
    assert residency.victims(100, lambda k: False) == [("m", 1)]
    assert residency.victims(100, lambda k: k == ("m", 1)) == [("m", 2)]
    assert residency.victims(250, lambda k: False) == [("m", 1), ("m", 2), ("m", 0)]
    assert Residency(0).victims(10**9, lambda k: False) == []  # no budget
