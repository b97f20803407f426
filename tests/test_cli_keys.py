"""``bundle keys create|list|revoke`` as a user sees them (CliRunner, stdout and stderr apart)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from bundlegate.cli import cli
from bundlegate.keys import KeyStore, hash_key


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "keys.json"


def create(runner: CliRunner, keys_file: Path, key_id: str, models: str, *extra: str) -> str:
    result = runner.invoke(
        cli, ["keys", "create", key_id, "--models", models, "--file", str(keys_file), *extra]
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_create_prints_the_key_alone_on_stdout_and_stores_only_its_hash(
    runner: CliRunner, keys_file: Path
) -> None:
    result = runner.invoke(
        cli, ["keys", "create", "web-shop", "--models", "credit, churn*", "--file", str(keys_file)]
    )
    assert result.exit_code == 0
    key = result.stdout.strip()
    assert result.stdout == key + "\n"
    assert key.startswith("bg_")
    assert result.output.rstrip().splitlines()[-1] == key
    assert "not shown again" in result.stderr
    assert key not in result.stderr

    text = keys_file.read_text()
    assert key not in text
    assert json.loads(text)["keys"][0]["sha256"] == hash_key(key)
    assert json.loads(text)["keys"][0]["models"] == ["credit", "churn*"]
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    record = KeyStore(keys_file).authenticate(key)
    assert (record.id, record.admin) == ("web-shop", False)
    assert record.allows("churn-eu")
    assert not record.allows("creditx")


def test_admin_flag_and_the_keys_file_from_the_environment(runner: CliRunner, keys_file: Path) -> None:
    result = runner.invoke(
        cli,
        ["keys", "create", "ops", "--models", "*", "--admin"],
        env={"BUNDLEGATE_KEYS_FILE": str(keys_file)},
    )
    assert result.exit_code == 0, result.output
    assert KeyStore(keys_file).authenticate(result.stdout.strip()).admin


def test_list_shows_ids_models_admin_created_and_never_the_full_hash(
    runner: CliRunner, keys_file: Path
) -> None:
    web = create(runner, keys_file, "web", "credit,churn*")
    create(runner, keys_file, "ops", "*", "--admin")

    result = runner.invoke(cli, ["keys", "list", "--file", str(keys_file)])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "MODELS", "ADMIN", "CREATED", "SHA256"]
    assert lines[1].split()[:3] == ["web", "credit,churn*", "no"]
    assert lines[2].split()[:3] == ["ops", "*", "yes"]
    assert lines[1].split()[4] == hash_key(web)[:8] + "…"
    assert hash_key(web) not in result.output
    assert web not in result.output


def test_revoke_removes_the_key(runner: CliRunner, keys_file: Path) -> None:
    gone = create(runner, keys_file, "gone", "*")
    keep = create(runner, keys_file, "keep", "*")
    result = runner.invoke(cli, ["keys", "revoke", "gone", "--file", str(keys_file)])
    assert result.exit_code == 0
    assert "Revoked key 'gone'" in result.stdout
    store = KeyStore(keys_file)
    assert store.authenticate(keep).id == "keep"
    assert [r.id for r in store.records] == ["keep"]
    assert hash_key(gone) not in keys_file.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "web", "--models", "credit"], "already exists"),
        (["keys", "create", "new", "--models", "Credit"], "invalid model pattern"),
        (["keys", "create", "new", "--models", ", ,"], "at least one model pattern"),
        (["keys", "create", "bad id", "--models", "*"], "invalid key id"),
        (["keys", "revoke", "nobody"], "no key with id 'nobody'"),
    ],
)
def test_user_errors_are_one_line_and_exit_1(
    runner: CliRunner, keys_file: Path, args: list[str], message: str
) -> None:
    create(runner, keys_file, "web", "*")
    before = keys_file.read_bytes()
    result = runner.invoke(cli, [*args, "--file", str(keys_file)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert keys_file.read_bytes() == before


@pytest.mark.parametrize("command", [["list"], ["revoke", "web"]])
def test_a_missing_keys_file_is_an_error(runner: CliRunner, tmp_path: Path, command: list[str]) -> None:
    result = runner.invoke(cli, ["keys", *command, "--file", str(tmp_path / "missing.json")])
    assert result.exit_code == 1
    assert "keys file not found" in result.stderr
    assert "Traceback" not in result.output


def test_a_broken_keys_file_is_an_error_and_is_not_overwritten(runner: CliRunner, keys_file: Path) -> None:
    keys_file.write_text("{broken")
    result = runner.invoke(cli, ["keys", "create", "web", "--models", "*", "--file", str(keys_file)])
    assert result.exit_code == 1
    assert "not valid JSON" in result.stderr
    assert keys_file.read_text() == "{broken"


def test_the_file_option_is_required(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["keys", "list"], env={"BUNDLEGATE_KEYS_FILE": None})
    assert result.exit_code == 2
    assert "--file" in result.stderr
