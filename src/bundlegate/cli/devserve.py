"""``make serve``: the example bundles on 127.0.0.1 with a fresh development key.

    python -m bundlegate.cli.devserve bundles/ --port 8080

Writes ``.dev/keys.json`` (git-ignored) holding one new key ``dev`` for every model (admin, so the
repository endpoints can be tried too), prints the key and a curl line that predicts with the ``iris``
example bundle (or the first bundle found), then runs ``bundle serve`` on 127.0.0.1. Every run makes a
new key; the previous development key stops working.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from bundlegate.cli.serve_command import check_startable
from bundlegate.keys import create_key
from bundlegate.manifest import MANIFEST_FILE, Manifest
from bundlegate.settings import Settings

DEV_DIR = Path(".dev")
DEV_KEY_ID = "dev"
PREFERRED_MODEL = "iris"


def write_dev_key(directory: Path = DEV_DIR) -> tuple[Path, str]:
    """A fresh keys file ``directory/keys.json`` with one admin key for every model; returns (file, key)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / "keys.json"
    path.unlink(missing_ok=True)
    return path, create_key(path, DEV_KEY_ID, ["*"], admin=True)


def _latest_manifest(model_dir: Path) -> tuple[Path, Manifest] | None:
    versions = sorted((int(p.name), p) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    for _, path in reversed(versions):
        try:
            return path, Manifest.model_validate_json((path / MANIFEST_FILE).read_bytes())
        except (OSError, ValueError):
            continue
    return None


def example_request(repo: Path) -> tuple[str, dict[str, Any]] | None:
    """(model name, one-record request body) for the curl line: the iris bundle's first sample row, else
    the first bundle with a sample file."""
    if not repo.is_dir():
        return None
    dirs = sorted(p for p in repo.iterdir() if p.is_dir())
    dirs.sort(key=lambda p: p.name != PREFERRED_MODEL)
    for model_dir in dirs:
        found = _latest_manifest(model_dir)
        if found is None or found[1].sample_file is None:
            continue
        path, manifest = found
        try:
            sample = json.loads((path / found[1].sample_file).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(sample, list) and sample and isinstance(sample[0], dict):
            return manifest.name, {"inputs": sample[0]}
    return None


def curl_line(host: str, port: int, key: str, model: str, body: dict[str, Any]) -> str:
    url = f"http://{host}:{port}/v1/models/{model}/predict"
    return (
        f"curl -s {url} -H {shlex.quote('Authorization: Bearer ' + key)} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bundlegate.cli.devserve", description=__doc__)
    parser.add_argument("repo", type=Path, nargs="?", default=Path("bundles"))
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    keys_file, key = write_dev_key()
    settings = Settings(repository=args.repo, host="127.0.0.1", port=args.port, keys_file=keys_file)
    example = example_request(args.repo)
    out = sys.stdout
    out.write(f"\nDevelopment key (id {DEV_KEY_ID!r}, all models, admin; stored hashed in {keys_file}):\n")
    out.write(f"\n    {key}\n\n")
    if example is not None:
        out.write("Try it once the server is up:\n\n")
        out.write(f"    {curl_line(settings.host, settings.port, key, *example)}\n\n")
    else:
        out.write(f"No bundle with sample rows in {args.repo}; `make bundles` builds the examples.\n\n")
    out.write(f"Models: curl -s http://127.0.0.1:{args.port}/v1/models -H 'Authorization: Bearer {key}'\n")
    out.write(f"Metrics: curl -s http://127.0.0.1:{args.port}/metrics -H 'Authorization: Bearer {key}'\n\n")
    out.flush()
    from bundlegate.server.run import serve

    sys.exit(serve(check_startable(settings)))


if __name__ == "__main__":
    main()
