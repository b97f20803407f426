"""The /docs page in a real browser: headless Chromium (the Debian package) loads it from ``bundle serve``
on the example bundles, Swagger UI runs from the gateway's own assets and lists every model's
operations from /openapi.json; a screenshot is taken.

``BUNDLEGATE_UPDATE_SCREENSHOT=1 pytest tests/test_docs_page.py`` also writes the screenshot to
docs/docs-page.png (the one the README shows)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from server.test_serve_socket import serve

pytestmark = [pytest.mark.socket, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "bundles"
SCREENSHOT = ROOT / "docs" / "docs-page.png"
BROWSER_TIMEOUT_S = 90
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)
    return path


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",  # let the page's scripts fetch and render the document
            *args,
        ],
        capture_output=True,
        timeout=BROWSER_TIMEOUT_S,
        check=False,
    )


def test_docs_page_renders_every_model_in_chromium(tmp_path: Path) -> None:
    browser = chromium()
    # without keys (loopback only) the page shows every model; with keys it shows what a key may see
    with serve(tmp_path, str(EXAMPLES), "--insecure-no-auth", "--no-access-log") as server:
        url = f"{server.url}/docs"
        dom = headless(browser, tmp_path / "profile", "--dump-dom", url)
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout.decode()
        paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', html))
        models = {d.name for d in EXAMPLES.iterdir() if (d / "1" / "bundle.json").is_file()}
        assert len(models) >= 3
        for model in models:
            assert f"/v1/models/{model}/predict/batch" in paths, sorted(paths)
            assert f"/v2/models/{model}/infer" in paths
        assert "OAS 3.1" in html

        shot = tmp_path / "docs-page.png"
        taken = headless(
            browser, tmp_path / "profile", "--window-size=1280,1400", f"--screenshot={shot}", url
        )
        assert taken.returncode == 0, taken.stderr[-2000:]
        assert shot.read_bytes()[:8] == PNG_MAGIC
        assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
        if os.environ.get("BUNDLEGATE_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, SCREENSHOT)
    assert SCREENSHOT.is_file(), "docs/docs-page.png is missing (BUNDLEGATE_UPDATE_SCREENSHOT=1 makes it)"
