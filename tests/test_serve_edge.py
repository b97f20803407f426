"""``bundle serve`` options at the edge, over real sockets: TLS with a self-signed certificate made here,
CORS for browsers on configured origins, and a per-key rate limit that holds across ``--workers 2``."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import bundle_factory as bf
from bundlegate.cli import cli
from bundlegate.keys import create_key
from server.test_serve_socket import IRIS_ROWS, serve

pytestmark = [pytest.mark.socket, pytest.mark.slow]
MAX_REQUESTS = 60


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("edge") / "bundles"
    repo.mkdir()
    bf.write(repo, bf.iris_model())
    return repo


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files), valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_tls_with_a_self_signed_certificate(repo: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    keys = tmp_path / "keys.json"
    auth = {"Authorization": "Bearer " + create_key(keys, "tls", ["*"])}
    args = (str(repo), "--keys", str(keys), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    with serve(tmp_path, *args, wait=False) as server:
        https = f"https://127.0.0.1:{server.port}"
        trust = ssl.create_default_context(cafile=str(cert))
        for _ in range(600):  # bounded: up to 60 s for startup
            try:
                if httpx.get(f"{https}/readyz", verify=trust, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.process.poll() is not None:
                pytest.fail(server.stderr()[-3000:])
            time.sleep(0.1)
        r = httpx.post(
            f"{https}/v1/models/iris/predict",
            json={"inputs": IRIS_ROWS[0].tolist()},
            headers=auth,
            verify=trust,
        )
        assert r.status_code == 200, r.text
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the certificate
            httpx.get(f"{https}/healthz", timeout=5)
        with pytest.raises(httpx.TransportError):  # plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        assert "https://" in server.stderr()


def test_tls_needs_both_files() -> None:
    result = CliRunner().invoke(cli, ["serve", ".", "--insecure-no-auth", "--ssl-certfile", "cert.pem"])
    assert result.exit_code == 1
    assert "--ssl-keyfile" in result.output


def test_cors_for_configured_origins_only(repo: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    key = create_key(keys, "browser", ["*"])
    allowed, other = "https://app.example", "https://evil.example"
    with serve(
        tmp_path, str(repo), "--keys", str(keys), "--cors-origins", f"{allowed}, https://b.example"
    ) as server:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        ok = httpx.options(f"{server.url}/v1/models/iris/predict", headers={"Origin": allowed, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed
        assert "POST" in ok.headers["access-control-allow-methods"]
        refused = httpx.options(
            f"{server.url}/v1/models/iris/predict", headers={"Origin": other, **preflight}
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        r = httpx.post(
            f"{server.url}/v1/models/iris/predict",
            json={"inputs": IRIS_ROWS[0].tolist()},
            headers={"Origin": allowed, "Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == allowed
        assert "x-model-version" in r.headers["access-control-expose-headers"].lower()
    with serve(tmp_path, str(repo), "--keys", str(keys)) as plain:  # off by default
        r = httpx.get(f"{plain.url}/healthz", headers={"Origin": allowed})
        assert "access-control-allow-origin" not in r.headers


def test_rate_limit_is_per_key_across_workers(repo: Path, tmp_path: Path) -> None:
    """At 0.1 requests/s (a burst of one) a key gets one answer in the first seconds, however many
    workers there are; requests on new connections reach both workers (the request id's prefix names
    the worker that answered)."""
    keys = tmp_path / "keys.json"
    auth = {"Authorization": "Bearer " + create_key(keys, "limited", ["*"])}
    args = (str(repo), "--keys", str(keys), "--workers", "2", "--rate-limit-rps", "0.1", "--no-access-log")
    with serve(tmp_path, *args) as server:
        answered, workers = [], set()
        for _ in range(MAX_REQUESTS):
            with httpx.Client(base_url=server.url, headers=auth) as fresh_connection:
                r = fresh_connection.post("/v1/models/iris/predict", json={"inputs": IRIS_ROWS[0].tolist()})
            assert r.status_code in (200, 429), r.text
            answered.append(r.status_code)
            workers.add(r.headers["x-request-id"].split("-")[0])
            if len(workers) == 2 and len(answered) >= 10:
                break
        assert len(workers) == 2, "every request went to one worker"
        assert answered.count(200) == 1, answered
