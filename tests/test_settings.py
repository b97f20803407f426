"""Settings: defaults from the architecture table, BUNDLEGATE_* variables, flags over the environment."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from bundlegate.cli import cli, serve_command
from bundlegate.errors import InvalidSetting
from bundlegate.settings import FLAGS, Settings, env_name


def test_defaults_are_the_documented_ones() -> None:
    s = Settings()
    assert s.repository == Path("bundles")
    assert (s.host, s.port, s.keys_file, s.insecure_no_auth, s.workers) == ("127.0.0.1", 8080, None, False, 1)
    assert s.allow_pickle is False
    assert s.max_body_bytes == 16 * 1024 * 1024
    assert (s.request_max_rows, s.max_string_length, s.max_json_depth) == (10_000, 1024, 32)
    assert (s.batch_max_rows, s.batch_max_delay_ms, s.queue_max_rows) == (256, 1.0, 20_000)
    assert (s.request_timeout_ms, s.reload_interval_s, s.drain_timeout_s, s.ort_threads) == (10_000, 0, 20, 1)
    assert (s.access_log, s.log_level, s.rate_limit_rps) == (True, "info", 0)


def test_from_env_reads_every_documented_variable() -> None:
    env = {
        "BUNDLEGATE_REPOSITORY": "/srv/bundles",
        "BUNDLEGATE_HOST": "0.0.0.0",
        "BUNDLEGATE_PORT": "9000",
        "BUNDLEGATE_KEYS_FILE": "/etc/keys.json",
        "BUNDLEGATE_INSECURE_NO_AUTH": "true",
        "BUNDLEGATE_WORKERS": "2",
        "BUNDLEGATE_ALLOW_PICKLE": "1",
        "BUNDLEGATE_MAX_BODY_BYTES": "2048",
        "BUNDLEGATE_REQUEST_MAX_ROWS": "50",
        "BUNDLEGATE_MAX_STRING_LENGTH": "64",
        "BUNDLEGATE_MAX_JSON_DEPTH": "8",
        "BUNDLEGATE_BATCH_MAX_ROWS": "32",
        "BUNDLEGATE_BATCH_MAX_DELAY_MS": "2.5",
        "BUNDLEGATE_QUEUE_MAX_ROWS": "100",
        "BUNDLEGATE_REQUEST_TIMEOUT_MS": "500",
        "BUNDLEGATE_RELOAD_INTERVAL_S": "30",
        "BUNDLEGATE_DRAIN_TIMEOUT_S": "5",
        "BUNDLEGATE_ORT_THREADS": "2",
        "BUNDLEGATE_ACCESS_LOG": "off",
        "BUNDLEGATE_LOG_LEVEL": "DEBUG",
        "BUNDLEGATE_RATE_LIMIT_RPS": "10",
        "UNRELATED": "x",
    }
    s = Settings.from_env(env)
    assert s.repository == Path("/srv/bundles")
    assert s.keys_file == Path("/etc/keys.json")
    assert (s.host, s.port, s.workers, s.insecure_no_auth, s.allow_pickle) == ("0.0.0.0", 9000, 2, True, True)
    assert (s.max_body_bytes, s.request_max_rows, s.max_string_length, s.max_json_depth) == (2048, 50, 64, 8)
    assert (s.batch_max_rows, s.batch_max_delay_ms, s.queue_max_rows) == (32, 2.5, 100)
    assert (s.request_timeout_ms, s.reload_interval_s, s.drain_timeout_s, s.ort_threads) == (500, 30, 5, 2)
    assert (s.access_log, s.log_level, s.rate_limit_rps) == (False, "debug", 10)
    assert s.request_timeout_s == 0.5
    assert s.batch_max_delay_s == 0.0025


def test_from_env_with_nothing_set_is_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("BUNDLEGATE_PORT", "eighty", "BUNDLEGATE_PORT: expected a number"),
        ("BUNDLEGATE_PORT", "70000", "BUNDLEGATE_PORT"),
        ("BUNDLEGATE_WORKERS", "0", "BUNDLEGATE_WORKERS"),
        ("BUNDLEGATE_ACCESS_LOG", "maybe", "expected true or false"),
        ("BUNDLEGATE_BATCH_MAX_DELAY_MS", "nan", "expected a number"),
        ("BUNDLEGATE_LOG_LEVEL", "loud", "BUNDLEGATE_LOG_LEVEL"),
        ("BUNDLEGATE_MAX_JSON_DEPTH", "1", "BUNDLEGATE_MAX_JSON_DEPTH"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(InvalidSetting) as info:
        Settings.from_env({name: value})
    assert fragment in info.value.message
    assert info.value.code == "invalid_setting"


def test_replace_applies_flags_over_the_environment_and_skips_missing_flags() -> None:
    s = Settings.from_env({"BUNDLEGATE_PORT": "9000", "BUNDLEGATE_HOST": "0.0.0.0"})
    t = s.replace(port=8081, host=None)
    assert (t.port, t.host) == (8081, "0.0.0.0")
    with pytest.raises(TypeError):
        s.replace(colour="blue")
    with pytest.raises(InvalidSetting):
        s.replace(request_max_rows=0)


def test_settings_are_immutable() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_every_setting_has_a_flag_and_help_names_its_variable() -> None:
    """One declaration: every setting is a flag of ``bundle serve`` (the repository, a directory or
    an object-store URL, its argument), and ``--help`` names the ``BUNDLEGATE_*`` variable of each."""
    argument = {"repository", "repository_url"}
    assert {f.field for f in FLAGS} | argument == {f.name for f in fields(Settings)}
    out = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=200).output
    missing = [env_name(f.name) for f in fields(Settings) if env_name(f.name) not in out]
    assert missing == []
    assert "--request-max-rows" in out
    assert "--max-batch-rows" not in out


def test_serve_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLEGATE_PORT", "9000")
    monkeypatch.setenv("BUNDLEGATE_WORKERS", "3")
    monkeypatch.setenv("BUNDLEGATE_ACCESS_LOG", "off")
    monkeypatch.setenv("BUNDLEGATE_REPOSITORY", "from-env")
    ctx = cli.commands["serve"].make_context("serve", ["--port", "9001", "--request-max-rows", "7"])
    s = serve_command.settings_from(ctx.params)
    assert (s.port, s.workers, s.access_log, s.request_max_rows) == (9001, 3, False, 7)
    assert s.repository == Path("from-env")
    assert s.batch_max_rows == Settings().batch_max_rows  # neither given: the default


def test_hardening_settings_have_defaults_and_read_the_environment() -> None:
    s = Settings()
    assert (s.max_header_bytes, s.max_headers, s.head_timeout_s, s.body_timeout_s) == (32768, 100, 10, 60)
    assert (s.metrics_port, s.trusted_keys, s.onnx_domains) == (None, None, "")
    assert (s.max_model_bytes, s.max_tracebacks_per_minute) == (1024**3, 10)
    t = Settings.from_env(
        {
            "BUNDLEGATE_MAX_HEADER_BYTES": "8192",
            "BUNDLEGATE_MAX_HEADERS": "20",
            "BUNDLEGATE_HEAD_TIMEOUT_S": "2.5",
            "BUNDLEGATE_BODY_TIMEOUT_S": "30",
            "BUNDLEGATE_METRICS_PORT": "9090",
            "BUNDLEGATE_TRUSTED_KEYS": "/etc/trusted.keys",
            "BUNDLEGATE_ONNX_DOMAINS": "com.microsoft, ",
            "BUNDLEGATE_MAX_MODEL_BYTES": "1_000_000",
            "BUNDLEGATE_MAX_TRACEBACKS_PER_MINUTE": "0",
        }
    )
    assert (t.max_header_bytes, t.max_headers, t.head_timeout_s, t.body_timeout_s) == (8192, 20, 2.5, 30)
    assert (t.metrics_port, t.trusted_keys, t.extra_onnx_domains) == (
        9090,
        Path("/etc/trusted.keys"),
        ("com.microsoft",),
    )
    assert (t.max_model_bytes, t.max_tracebacks_per_minute) == (1_000_000, 0)
    assert Settings.from_env({"BUNDLEGATE_METRICS_PORT": ""}).metrics_port is None
    with pytest.raises(InvalidSetting, match="BUNDLEGATE_METRICS_PORT"):
        Settings.from_env({"BUNDLEGATE_METRICS_PORT": "70000"})
    with pytest.raises(InvalidSetting, match="BUNDLEGATE_HEAD_TIMEOUT_S"):
        Settings.from_env({"BUNDLEGATE_HEAD_TIMEOUT_S": "0"})
