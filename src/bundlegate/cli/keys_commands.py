"""``bundle keys create|list|revoke``: manage the API keys file (DESIGN.md §6).

``create`` prints the new key once, alone on stdout (its last line), so ``KEY=$(bundle keys create ...)``
captures exactly the key; everything else goes to stderr. Only the key's sha256 is written to the file.
Errors (duplicate id, unknown id, missing or broken file, bad pattern) are ``BundlegateError``s and leave
through the group's one exit path: one line on stderr, exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bundlegate.keys import create_key, list_keys, revoke_key

KEYS_FILE_ENV = "BUNDLEGATE_KEYS_FILE"

_json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
_file_option = click.option(
    "--file",
    "keys_file",
    envvar=KEYS_FILE_ENV,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The keys file (default: ${KEYS_FILE_ENV}).",
)


def _split_patterns(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


@click.group("keys")
def keys_group() -> None:
    """Create, list and revoke API keys."""


@keys_group.command("create")
@click.argument("key_id", metavar="ID")
@click.option(
    "--models",
    required=True,
    help="Comma-separated model names or globs this key may use, e.g. 'credit,churn*'; '*' is every model.",
)
@click.option("--admin", is_flag=True, help="Allow the repository endpoints (load, unload, index).")
@_file_option
@_json_option
def create_command(key_id: str, models: str, admin: bool, keys_file: Path, as_json: bool) -> None:
    """Create a key and print it, once: only its sha256 is stored."""
    patterns = _split_patterns(models)
    key = create_key(keys_file, key_id, patterns, admin=admin)
    if as_json:
        click.echo(json.dumps({"id": key_id, "models": patterns, "admin": admin, "key": key}))
        return
    scope = "admin, " if admin else ""
    click.echo(f"Created key {key_id!r} ({scope}models: {', '.join(patterns)}) in {keys_file}.", err=True)
    click.echo("Store it now; it is not shown again:", err=True)
    click.echo(key)


@keys_group.command("list")
@_file_option
@_json_option
def list_command(keys_file: Path, as_json: bool) -> None:
    """List the keys: id, models, admin, created, and the first digits of the stored sha256."""
    records = list_keys(keys_file)
    if as_json:
        for r in records:
            entry = {"id": r.id, "models": list(r.models), "admin": r.admin, "created_at": r.created_at}
            click.echo(json.dumps(entry | {"sha256_prefix": r.sha256_prefix}))
        return
    if not records:
        click.echo(f"No keys in {keys_file}.", err=True)
        return
    rows = [("ID", "MODELS", "ADMIN", "CREATED", "SHA256")]
    rows += [
        (r.id, ",".join(r.models), "yes" if r.admin else "no", r.created_at or "-", r.sha256_prefix + "…")
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])


@keys_group.command("revoke")
@click.argument("key_id", metavar="ID")
@_file_option
@_json_option
def revoke_command(key_id: str, keys_file: Path, as_json: bool) -> None:
    """Remove a key; running gateways stop accepting it within about a second."""
    revoke_key(keys_file, key_id)
    if as_json:
        click.echo(json.dumps({"id": key_id, "revoked": True}))
        return
    click.echo(f"Revoked key {key_id!r} in {keys_file}; running gateways stop accepting it within ~1 s.")


def register(group: click.Group) -> None:
    """Add this module's commands to the `bundle` group."""
    group.add_command(keys_group)
