"""``--json`` on every ``bundle`` command that prints data: each prints JSON a script can read (one
object, or one object per line), with the same facts as the text output; and exit codes as the README
documents them (0 done, 1 a failure of the command, 2 a usage error)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import joblib
import pytest
from click.testing import CliRunner

from bundlegate.cli import cli
from packer_zoo import IRIS_FEATURES, iris

# Commands that print no data: serve runs a server; groups only hold commands.
WITHOUT_DATA = {"serve"}


def run_json(*args: str | Path) -> list[Any]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    try:
        return [json.loads(result.stdout)]  # one document (inspect prints bundle.json, indented)
    except ValueError:
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix}{name} ")
        else:
            found.append((prefix + name, command))
    return found


def test_every_command_that_prints_data_has_json() -> None:
    listed = commands(cli)
    assert len(listed) >= 8
    for name, command in listed:
        if name not in WITHOUT_DATA:
            assert any("--json" in p.opts for p in command.params), f"bundle {name} has no --json"


def test_json_output_of_every_command(tmp_path: Path) -> None:
    X, y = iris()
    from sklearn.linear_model import LogisticRegression

    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), tmp_path / "iris.pkl")
    repo = tmp_path / "repo"
    features = ",".join(IRIS_FEATURES)
    (packed,) = run_json(
        "pack", tmp_path / "iris.pkl", "--name", "iris", "--features", features, "--out", repo, "--json"
    )
    assert packed["name"] == "iris"
    assert packed["version"] == 1
    assert packed["parity"]["passed"] is True
    bundle = Path(packed["path"])
    (verified,) = run_json("verify", bundle, "--json")
    assert verified["model_run"] is True
    assert verified["sample_rows"] > 0
    (inspected,) = run_json("inspect", bundle, "--json")
    assert inspected["name"] == "iris"
    (listed,) = run_json("list", repo, "--json")
    assert listed["name"] == "iris"
    assert listed["parity"] == "passed"

    keys = tmp_path / "keys.json"
    (created,) = run_json("keys", "create", "app", "--models", "iris,credit*", "--file", keys, "--json")
    assert created["id"] == "app"
    assert created["models"] == ["iris", "credit*"]
    assert created["key"].startswith("bg_")
    (entry,) = run_json("keys", "list", "--file", keys, "--json")
    assert entry["id"] == "app"
    assert created["key"] not in json.dumps(entry)
    (revoked,) = run_json("keys", "revoke", "app", "--file", keys, "--json")
    assert revoked == {"id": "app", "revoked": True}
    assert run_json("keys", "list", "--file", keys, "--json") == []


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--version"], 0),
        (["inspect", "no-such-bundle"], 1),  # the command failed: one line on stderr
        (["keys", "create"], 2),  # usage error: click's message and usage
        (["no-such-command"], 2),
    ],
)
def test_exit_codes(args: list[str], code: int) -> None:
    assert CliRunner().invoke(cli, args).exit_code == code
