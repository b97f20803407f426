"""API keys: the keys file, authentication, hot reload, model patterns, and the HTTP helper."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bundlegate.errors import NotFound, RateLimited, Unauthenticated
from bundlegate.http.auth import (
    NOT_FOUND_MESSAGE,
    ApiKeyAuth,
    check_model_access,
    presented_key,
    require_admin,
)
from bundlegate.keys import (
    DuplicateKeyId,
    InvalidKeySpec,
    KeyRecord,
    KeysFileError,
    KeyStore,
    UnknownKeyId,
    create_key,
    generate_key,
    hash_key,
    list_keys,
    revoke_key,
)
from bundlegate.ratelimit import RateLimiter
from fake_clock import FakeClock


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "keys.json"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_generated_keys_are_prefixed_high_entropy_and_unique() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith("bg_")
        assert len(key) == 3 + 43
        assert set(key[3:]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_keys_file_stores_only_the_hash_with_owner_only_permissions(keys_file: Path) -> None:
    key = create_key(keys_file, "web-shop", ["credit", "churn*"], admin=False)

    text = keys_file.read_text()
    assert key not in text
    assert key[3:] not in text
    doc = json.loads(text)
    (entry,) = doc["keys"]
    assert entry["id"] == "web-shop"
    assert entry["sha256"] == hash_key(key)
    assert entry["models"] == ["credit", "churn*"]
    assert entry["admin"] is False
    assert entry["created_at"].endswith("Z")
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    # The atomic write leaves no temp file behind.
    assert [p.name for p in keys_file.parent.iterdir()] == ["keys.json"]


def test_create_refuses_a_duplicate_id_and_leaves_the_file_alone(keys_file: Path) -> None:
    create_key(keys_file, "web", ["*"])
    before = keys_file.read_bytes()
    with pytest.raises(DuplicateKeyId, match="already exists"):
        create_key(keys_file, "web", ["credit"])
    assert keys_file.read_bytes() == before


@pytest.mark.parametrize("key_id", ["", "-web", "web shop", "a" * 65, "web/../x", "wéb"])
def test_create_refuses_bad_ids(keys_file: Path, key_id: str) -> None:
    with pytest.raises(InvalidKeySpec):
        create_key(keys_file, key_id, ["*"])
    assert not keys_file.exists()


@pytest.mark.parametrize("models", [[], [""], ["Credit"], ["credit", "a b"], ["[abc"], ["x" * 65]])
def test_create_refuses_bad_model_patterns(keys_file: Path, models: list[str]) -> None:
    with pytest.raises(InvalidKeySpec):
        create_key(keys_file, "web", models)
    assert not keys_file.exists()


def test_create_never_overwrites_a_broken_keys_file(keys_file: Path) -> None:
    keys_file.write_text("{not json")
    with pytest.raises(KeysFileError, match="not valid JSON"):
        create_key(keys_file, "web", ["*"])
    assert keys_file.read_text() == "{not json"


def test_list_and_revoke(keys_file: Path) -> None:
    create_key(keys_file, "a", ["credit"])
    create_key(keys_file, "b", ["*"], admin=True)
    assert [(r.id, r.admin, r.models) for r in list_keys(keys_file)] == [
        ("a", False, ("credit",)),
        ("b", True, ("*",)),
    ]
    revoke_key(keys_file, "a")
    assert [r.id for r in list_keys(keys_file)] == ["b"]
    with pytest.raises(UnknownKeyId):
        revoke_key(keys_file, "a")
    with pytest.raises(KeysFileError, match="not found"):
        list_keys(keys_file.parent / "missing.json")


def test_record_repr_shows_no_digest(keys_file: Path) -> None:
    key = create_key(keys_file, "web", ["*"])
    (record,) = list_keys(keys_file)
    assert hash_key(key) not in repr(record)
    assert record.digest.hex() not in repr(record)


@pytest.mark.parametrize(
    ("patterns", "name", "allowed"),
    [
        (("churn*",), "churn", True),
        (("churn*",), "churn-eu", True),
        (("churn*",), "credit", False),
        (("churn*",), "xchurn", False),
        (("credit", "churn*"), "credit", True),
        (("credit",), "credit2", False),
        (("*",), "anything.at_all", True),
        (("model-?",), "model-a", True),
        (("model-?",), "model-ab", False),
        (("[ab]x",), "bx", True),
        (("[!ab]x",), "ax", False),
    ],
)
def test_model_patterns(patterns: tuple[str, ...], name: str, allowed: bool) -> None:
    assert KeyRecord("k", False, patterns).allows(name) is allowed


# --- KeyStore --------------------------------------------------------------------------------------------


def test_authenticate_returns_the_keys_record(keys_file: Path) -> None:
    key = create_key(keys_file, "web", ["credit", "churn*"])
    create_key(keys_file, "ops", ["*"], admin=True)
    record = KeyStore(keys_file).authenticate(key)
    assert (record.id, record.admin, record.models) == ("web", False, ("credit", "churn*"))


@pytest.mark.parametrize(
    "presented", [None, "", "bg_wrong", "x" * 10_000, "bg_ünïcode", "Bearer bg_x", "\x00"]
)
def test_unknown_missing_or_odd_keys_are_unauthenticated(keys_file: Path, presented: str | None) -> None:
    key = create_key(keys_file, "web", ["*"])
    store = KeyStore(keys_file)
    with pytest.raises(Unauthenticated) as exc:
        store.authenticate(presented)
    assert exc.value.code == "unauthenticated"
    assert key not in str(exc.value)


def test_a_near_miss_key_is_refused(keys_file: Path) -> None:
    key = create_key(keys_file, "web", ["*"])
    store = KeyStore(keys_file)
    for wrong in (key[:-1], key + "A", key.upper(), " " + key):
        with pytest.raises(Unauthenticated):
            store.authenticate(wrong)


def test_a_revoked_key_stops_working_without_a_restart(keys_file: Path, clock: FakeClock) -> None:
    keep = create_key(keys_file, "keep", ["*"])
    gone = create_key(keys_file, "gone", ["*"])
    store = KeyStore(keys_file, clock=clock)
    assert store.authenticate(gone).id == "gone"

    revoke_key(keys_file, "gone")
    clock.advance(1.01)
    with pytest.raises(Unauthenticated):
        store.authenticate(gone)
    assert store.authenticate(keep).id == "keep"


def test_a_new_key_works_without_a_restart(keys_file: Path, clock: FakeClock) -> None:
    create_key(keys_file, "first", ["*"])
    store = KeyStore(keys_file, clock=clock)
    new = create_key(keys_file, "second", ["credit"])
    clock.advance(1.01)
    assert store.authenticate(new).models == ("credit",)


def test_the_file_is_checked_at_most_once_per_interval(keys_file: Path, clock: FakeClock) -> None:
    gone = create_key(keys_file, "gone", ["*"])
    create_key(keys_file, "keep", ["*"])
    store = KeyStore(keys_file, clock=clock)
    revoke_key(keys_file, "gone")
    clock.advance(0.5)
    assert store.authenticate(gone).id == "gone"  # not re-checked yet: the hot path is a clock read
    clock.advance(0.51)
    with pytest.raises(Unauthenticated):
        store.authenticate(gone)


def test_a_kubernetes_style_symlink_swap_is_picked_up(tmp_path: Path, clock: FakeClock) -> None:
    old_dir, new_dir = tmp_path / "v1", tmp_path / "v2"
    old_dir.mkdir()
    new_dir.mkdir()
    old_key = create_key(old_dir / "keys.json", "old", ["*"])
    new_key = create_key(new_dir / "keys.json", "new", ["*"])
    link = tmp_path / "keys.json"
    link.symlink_to(old_dir / "keys.json")
    store = KeyStore(link, clock=clock)
    assert store.authenticate(old_key).id == "old"

    tmp_link = tmp_path / "keys.json.tmp"
    tmp_link.symlink_to(new_dir / "keys.json")
    os.replace(tmp_link, link)
    clock.advance(1.01)
    assert store.authenticate(new_key).id == "new"
    with pytest.raises(Unauthenticated):
        store.authenticate(old_key)


def test_a_broken_file_keeps_the_last_good_keys_and_logs_once(
    keys_file: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    key = create_key(keys_file, "web", ["*"])
    store = KeyStore(keys_file, clock=clock)
    keys_file.write_text('{"keys": [{"id": "half-writ')
    with caplog.at_level(logging.ERROR, logger="bundlegate.keys"):
        for _ in range(3):
            clock.advance(1.01)
            assert store.authenticate(key).id == "web"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "keeping the previous keys" in errors[0].getMessage()

    # Once the file is fixed, the new content is used.
    keys_file.unlink()
    new = create_key(keys_file, "fixed", ["*"])
    clock.advance(1.01)
    assert store.authenticate(new).id == "fixed"
    with pytest.raises(Unauthenticated):
        store.authenticate(key)


def test_a_deleted_file_keeps_the_last_good_keys(keys_file: Path, clock: FakeClock) -> None:
    key = create_key(keys_file, "web", ["*"])
    store = KeyStore(keys_file, clock=clock)
    keys_file.unlink()
    clock.advance(1.01)
    assert store.authenticate(key).id == "web"


@pytest.mark.parametrize(
    "content",
    [
        "",
        "[]",
        '{"keys": {}}',
        '{"keys": [{"id": "a", "sha256": "abc", "models": ["*"], "admin": false}]}',
        '{"keys": [{"id": "a", "sha256": "' + "0" * 64 + '", "models": "*", "admin": false}]}',
        '{"keys": [{"id": "a", "sha256": "' + "0" * 64 + '", "models": ["*"], "admin": "yes"}]}',
        '{"keys": [{"id": "a", "sha256": "'
        + "0" * 64
        + '", "models": ["*"]}, {"id": "a", "sha256": "'
        + "1" * 64
        + '", "models": ["*"]}]}',
    ],
)
def test_the_gateway_refuses_to_start_with_a_broken_keys_file(keys_file: Path, content: str) -> None:
    keys_file.write_text(content)
    with pytest.raises(KeysFileError):
        KeyStore(keys_file)


def test_an_empty_keys_file_refuses_everyone_and_says_so(
    keys_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys_file.write_text('{"keys": []}')
    with caplog.at_level(logging.WARNING, logger="bundlegate.keys"):
        store = KeyStore(keys_file)
    assert "holds no keys" in caplog.text
    with pytest.raises(Unauthenticated):
        store.authenticate(generate_key())


def test_the_gateway_refuses_to_start_without_the_keys_file(keys_file: Path) -> None:
    with pytest.raises(KeysFileError, match="not found"):
        KeyStore(keys_file)


def test_plaintext_keys_never_reach_a_log_line(
    keys_file: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = create_key(keys_file, "web", ["*"])
    store = KeyStore(keys_file, clock=clock)
    other = create_key(keys_file, "other", ["*"])
    clock.advance(1.01)
    store.authenticate(key)
    store.authenticate(other)
    for wrong in (key + "x", other[:-2]):
        with pytest.raises(Unauthenticated):
            store.authenticate(wrong)
    keys_file.write_text("{")
    clock.advance(1.01)
    store.authenticate(key)
    assert caplog.records, "the reload and the broken file are logged"
    for secret in (key, other, key[3:20], other[3:20]):
        assert secret not in caplog.text


# --- the HTTP helper ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer bg_abc")], "bg_abc"),
        ([(b"authorization", b"bearer   bg_abc ")], "bg_abc"),
        ([(b"x-api-key", b"bg_abc")], "bg_abc"),
        ([(b"x-api-key", b"bg_other"), (b"authorization", b"Bearer bg_abc")], "bg_abc"),
        ([(b"authorization", b"Basic dXNlcjpwYXNz")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"host", b"example")], None),
        ([], None),
    ],
)
def test_presented_key(headers: list[tuple[bytes, bytes]], expected: str | None) -> None:
    assert presented_key(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b"Bearer bg_abc"), (b"authorization", b"Bearer bg_abc")],
        [(b"authorization", b"Bearer bg_abc"), (b"authorization", b"Basic dXNlcjpwYXNz")],
        [(b"x-api-key", b"bg_abc"), (b"host", b"h"), (b"x-api-key", b"bg_other")],
    ],
)
def test_a_credential_header_given_twice_is_refused(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(Unauthenticated, match="more than one"):
        presented_key(headers)


def test_auth_from_headers_and_never_from_the_query_string(keys_file: Path) -> None:
    key = create_key(keys_file, "web", ["churn*"])
    auth = ApiKeyAuth(KeyStore(keys_file))
    assert auth.authenticate([(b"authorization", f"Bearer {key}".encode())]).id == "web"
    assert auth.authenticate([(b"x-api-key", key.encode())]).id == "web"
    scope = {"type": "http", "query_string": f"api_key={key}&key={key}".encode(), "headers": []}
    with pytest.raises(Unauthenticated, match="missing"):
        auth.authenticate(scope["headers"])


def test_a_key_for_other_models_gets_the_unknown_model_error(keys_file: Path) -> None:
    key = create_key(keys_file, "web", ["churn*"])
    record = ApiKeyAuth(KeyStore(keys_file)).authenticate([(b"x-api-key", key.encode())])
    check_model_access(record, "churn-eu")
    with pytest.raises(NotFound) as exc:
        check_model_access(record, "credit")
    assert (exc.value.code, exc.value.message) == ("not_found", NOT_FOUND_MESSAGE)
    assert "credit" not in exc.value.message
    with pytest.raises(NotFound):
        require_admin(record)


def test_auth_applies_the_rate_limit_per_key(keys_file: Path, clock: FakeClock) -> None:
    a = create_key(keys_file, "a", ["*"])
    b = create_key(keys_file, "b", ["*"])
    auth = ApiKeyAuth(KeyStore(keys_file), RateLimiter(1.0, clock=clock))
    auth.authenticate([(b"x-api-key", a.encode())])
    with pytest.raises(RateLimited):
        auth.authenticate([(b"x-api-key", a.encode())])
    auth.authenticate([(b"x-api-key", b.encode())])
    # An unknown key is refused before it can use up anyone's bucket.
    with pytest.raises(Unauthenticated):
        auth.authenticate([(b"x-api-key", b"bg_nope")])


def test_insecure_mode_lets_everything_through_as_admin() -> None:
    auth = ApiKeyAuth(None)
    record = auth.authenticate([])
    assert auth.insecure
    assert record.admin
    check_model_access(record, "anything")


# --- at the HTTP edge, in-process --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris bundle under three names: credit, churn-eu, churn-us."""
    import bundle_factory as bf

    root = tmp_path_factory.mktemp("repo")
    for name in ("credit", "churn-eu", "churn-us"):
        bf.write(root, bf.with_version(bf.iris_model(), 1, name=name))
    return root


@pytest.fixture
async def gateway(repo: Path, keys_file: Path, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    from prometheus_client import CollectorRegistry

    from bundlegate.http.app import create_app
    from bundlegate.metrics import GatewayMetrics
    from bundlegate.settings import Settings

    create_key(keys_file, "admin", ["*"], admin=True)
    settings = Settings(repository=repo, keys_file=keys_file, access_log=True)
    store = KeyStore(keys_file, clock=clock)
    app = create_app(settings, metrics=GatewayMetrics(CollectorRegistry()), keys=store)
    await app.startup()
    await app.loaded()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test") as c:
            yield c
    finally:
        await app.shutdown()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ROW = {"inputs": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}}


async def test_http_a_key_for_churn_cannot_see_credit_and_gets_the_unknown_model_404(
    gateway: httpx.AsyncClient, keys_file: Path, clock: FakeClock
) -> None:
    churn = create_key(keys_file, "churn-app", ["churn*"])
    clock.advance(1.01)
    ok = await gateway.post("/v1/models/churn-eu/predict", json=ROW, headers=bearer(churn))
    assert ok.status_code == 200

    def body(r: httpx.Response) -> Any:
        doc = r.json()
        doc.pop("request_id")
        return doc

    requests = [
        ("POST", "/v1/models/{}/predict"),
        ("POST", "/v1/models/{}/versions/1/predict"),
        ("POST", "/v2/models/{}/infer"),
        ("GET", "/v1/models/{}"),
        ("GET", "/v2/models/{}"),
        ("GET", "/v2/models/{}/ready"),
    ]
    for method, path in requests:
        forbidden = await gateway.request(method, path.format("credit"), json=ROW, headers=bearer(churn))
        unknown = await gateway.request(method, path.format("nosuchmodel"), json=ROW, headers=bearer(churn))
        assert forbidden.status_code == unknown.status_code == 404, path
        assert body(forbidden) == body(unknown), path
        doc = body(forbidden)
        assert (doc["code"] if path.startswith("/v2") else doc["error"]["code"]) == "not_found"
    listing = await gateway.get("/v1/models", headers=bearer(churn))
    assert "credit" not in listing.text


async def test_http_a_revoked_key_gets_401_without_a_restart(
    gateway: httpx.AsyncClient, keys_file: Path, clock: FakeClock
) -> None:
    key = create_key(keys_file, "soon-gone", ["*"])
    clock.advance(1.01)
    assert (await gateway.post("/v1/models/credit/predict", json=ROW, headers=bearer(key))).status_code == 200

    revoke_key(keys_file, "soon-gone")
    clock.advance(1.01)
    refused = await gateway.post("/v1/models/credit/predict", json=ROW, headers=bearer(key))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.json()["error"]["code"] == "unauthenticated"
    assert key not in refused.text


async def test_http_keys_are_taken_from_headers_only(
    gateway: httpx.AsyncClient, keys_file: Path, clock: FakeClock
) -> None:
    key = create_key(keys_file, "web", ["*"])
    clock.advance(1.01)
    ok = await gateway.post("/v1/models/credit/predict", json=ROW, headers={"X-API-Key": key})
    assert ok.status_code == 200
    for query in (f"api_key={key}", f"key={key}", f"access_token={key}"):
        refused = await gateway.post(f"/v1/models/credit/predict?{query}", json=ROW)
        assert refused.status_code == 401


async def test_http_the_access_log_names_the_key_id_never_the_key(
    gateway: httpx.AsyncClient, keys_file: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    key = create_key(keys_file, "web-shop", ["*"])
    clock.advance(1.01)
    await gateway.post("/v1/models/credit/predict", json=ROW, headers=bearer(key))
    await gateway.post("/v1/models/credit/predict", json=ROW, headers=bearer(key + "x"))
    await gateway.post(f"/v1/models/credit/predict?api_key={key}", json=ROW)
    await asyncio.sleep(0)  # access log lines are written at the end of the loop iteration
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [line["key_id"] for line in lines] == ["web-shop", None, None]
    assert [line["status"] for line in lines] == [200, 401, 401]
    assert key not in err
    assert key[3:20] not in err
