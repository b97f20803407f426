"""schemathesis against ``bundle serve`` on the example bundles, over a real socket: the OpenAPI document
the gateway generates for a key is fetched, then every operation in it (every example model, /v1 and
/v2, pinned and default versions) is called with generated valid and invalid requests. No answer may be
a server error, and every answer must conform to the document: its status, content type, headers and
body schema.

Bounded: a fixed number of examples per operation and a time budget for the whole run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bundlegate.keys import create_key
from server.test_serve_socket import serve

pytestmark = [pytest.mark.socket, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "bundles"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance"
)
MAX_EXAMPLES = 15
TIMEOUT_S = 400


def test_schemathesis_finds_no_server_error_and_answers_conform(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, "schemathesis", ["*"])  # not admin: no repository load/unload
    auth = {"Authorization": f"Bearer {key}"}
    with serve(tmp_path, str(EXAMPLES), "--keys", str(keys_file), "--no-access-log") as server:
        document = httpx.get(f"{server.url}/openapi.json", headers=auth, timeout=10).json()
        models = {p.split("/")[3] for p in document["paths"] if p.startswith("/v1/models/")}
        assert models == {d.name for d in EXAMPLES.iterdir() if (d / "1" / "bundle.json").is_file()}
        schema_file = tmp_path / "openapi.json"
        schema_file.write_text(json.dumps(document))
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                str(schema_file),
                "--url",
                server.url,
                "--header",
                f"Authorization: Bearer {key}",
                "--checks",
                CHECKS,
                "--max-examples",
                str(MAX_EXAMPLES),
                "--phases",
                "examples,coverage,fuzzing",
                "--seed",
                "21",
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--suppress-health-check",
                "all",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200  # still serving
    assert "Traceback" not in server.stderr()
