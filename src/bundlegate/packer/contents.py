"""The files a bundle holds beside its model: the stored sample rows and the original's answers."""

from __future__ import annotations

import json
from typing import Any

SAMPLE_FILE = "sample.json"
EXPECTED_FILE = "expected.json"


def json_bytes(doc: Any) -> bytes:
    """Compact JSON with one record (or one output) per line: small, and readable in a diff."""
    if isinstance(doc, list):
        body = ",\n".join(json.dumps(r, allow_nan=False) for r in doc)
        return f"[\n{body}\n]\n".encode()
    parts = [
        f"{json.dumps(k)}: [\n" + ",\n".join(json.dumps(v, allow_nan=False) for v in values) + "\n]"
        for k, values in doc.items()
    ]
    return ("{\n" + ",\n".join(parts) + "\n}\n").encode()
