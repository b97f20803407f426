"""``bundle sign`` and ``bundle signing-key create``: ed25519 signatures of bundles
(``bundlegate.signing``; the gateway checks them with ``bundle serve --trusted-keys FILE``).

``signing-key create`` writes a private key (mode 0600, never over an existing file) and prints the
public key alone on stdout, as the line a trusted keys file holds. ``sign`` writes
``bundle.json.sig`` beside the manifest of a bundle version; it checks the bundle first, so a
signature never vouches for a bundle that does not read.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bundlegate.bundle import read_bundle
from bundlegate.signing import create_signing_key, sign_bundle


@click.group("signing-key")
def signing_key_group() -> None:
    """Create the ed25519 key that signs bundles."""


@signing_key_group.command("create")
@click.argument("private_key", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def create(private_key: Path, as_json: bool) -> None:
    """Write a new private key to PRIVATE_KEY; print its public key for the trusted keys file."""
    line = create_signing_key(private_key)
    if as_json:
        click.echo(json.dumps({"private_key": str(private_key), "public_key": line}))
        return
    click.echo(
        f"private key written to {private_key} (keep it secret); add this line to the "
        "gateway's --trusted-keys file:",
        err=True,
    )
    click.echo(line)


@click.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--key",
    "private_key",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The private key from `bundle signing-key create`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def sign(path: Path, private_key: Path, as_json: bool) -> None:
    """Sign the bundle version at PATH (writes bundle.json.sig)."""
    bundle = read_bundle(path, verify=True)
    target = sign_bundle(path, private_key)
    if as_json:
        m = bundle.manifest
        click.echo(json.dumps({"name": m.name, "version": m.version, "signature": str(target)}))
        return
    click.echo(f"signed {bundle.manifest.name} version {bundle.manifest.version}: {target}", err=True)


def register(group: click.Group) -> None:
    group.add_command(sign)
    group.add_command(signing_key_group)
