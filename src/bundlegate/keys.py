"""API keys (DESIGN.md §6): creation, the keys file and authentication (per-key rate limits:
``bundlegate.ratelimit``).

A key is ``bg_`` followed by 43 url-safe base64 characters (32 random bytes). It is shown once, when it
is created; only its sha256 is stored, in a JSON keys file (or a Kubernetes Secret mounted as one)::

    {"keys": [{"id": "web-shop", "sha256": "<hex>", "models": ["credit", "churn*"],
               "admin": false, "created_at": "2026-11-22T08:00:00Z"}]}

``KeyStore`` serves the gateway: it re-reads the file when it changes (a revoked key stops working
within about a second, without a restart) and keeps the last good set when a changed file is broken.
``create_key``, ``list_keys`` and ``revoke_key`` serve the ``bundle keys`` commands.

Keys never appear in a log line, an error message or a metric; key ids may (the access log names them).
Errors: ``KeysFileError`` and its subclasses (``bundlegate.errors``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import fnmatch
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundlegate.errors import (
    DuplicateKeyId,
    InvalidKeySpec,
    KeysFileError,
    Unauthenticated,
    UnknownKeyId,
)

logger = logging.getLogger(__name__)

KEY_PREFIX = "bg_"
KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Model names match ^[a-z0-9][a-z0-9_.-]{0,62}$ (DESIGN.md §2); patterns add the fnmatch characters.
MODEL_PATTERN_RE = re.compile(r"^[a-z0-9_.*?\[\]!-]{1,64}$")
_SHA256_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
# A real key is 46 characters; anything much longer is not worth hashing.
MAX_PRESENTED_KEY_LENGTH = 256
RELOAD_CHECK_INTERVAL_S = 1.0


def generate_key() -> str:
    """A new random key: ``bg_`` + ``secrets.token_urlsafe(32)`` (256 bits of entropy)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex sha256 of a key, as the keys file stores it."""
    return hashlib.sha256(key.encode()).hexdigest()


def validate_key_id(key_id: str) -> str:
    if not KEY_ID_RE.match(key_id):
        raise InvalidKeySpec(
            f"invalid key id {key_id[:70]!r}: use 1-64 letters, digits, '_', '.', '-', starting alphanumeric"
        )
    return key_id


def validate_model_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    """Model name globs as the keys file holds them; raises ``InvalidKeySpec`` for an empty list, an empty
    or over-long pattern, upper case (model names are lower case, so it could never match), or an
    unclosed ``[``."""
    result: list[str] = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not MODEL_PATTERN_RE.match(pattern):
            shown = pattern[:70] if isinstance(pattern, str) else type(pattern).__name__
            raise InvalidKeySpec(
                f"invalid model pattern {shown!r}: use model names (lower case letters, digits, '_', '.', "
                "'-') and the glob characters '*', '?', '[...]'"
            )
        if pattern.count("[") != pattern.count("]"):
            raise InvalidKeySpec(f"invalid model pattern {pattern!r}: unbalanced '[' ']'")
        result.append(pattern)
    if not result:
        raise InvalidKeySpec("a key needs at least one model pattern ('*' allows every model)")
    return tuple(dict.fromkeys(result))


@dataclass(frozen=True)
class KeyRecord:
    """One key as the gateway knows it: its id, whether it may call admin endpoints, and the model name
    globs it may see. ``digest`` is the raw sha256 of the key (never the key itself)."""

    id: str
    admin: bool
    models: tuple[str, ...]
    created_at: str = ""
    digest: bytes = field(default=b"", repr=False)
    _matcher: Callable[[str], re.Match[str] | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One compiled regex for all the key's patterns, built once per record (fnmatch would look each
        # pattern up in its own cache on every call). Case-sensitive: model names are lower case.
        regex = "|".join(f"(?:{fnmatch.translate(p)})" for p in self.models) or r"(?!)"
        object.__setattr__(self, "_matcher", re.compile(regex).match)

    @property
    def allows_every_model(self) -> bool:
        """Whether a pattern of this key matches every name (``*``)."""
        return "*" in self.models

    def allows(self, model_name: str) -> bool:
        """Whether this key may see ``model_name`` (any of its globs matches the whole name)."""
        return self._matcher(model_name) is not None

    @property
    def sha256_prefix(self) -> str:
        """The first 8 hex digits of the digest: enough to tell keys apart in a listing."""
        return self.digest.hex()[:8]


# --- the keys file ---------------------------------------------------------------------------------------


def _parse_keys_document(doc: Any, where: str) -> list[KeyRecord]:
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise KeysFileError(f"{where}: expected a JSON object with a 'keys' list")
    records: list[KeyRecord] = []
    ids: set[str] = set()
    digests: set[bytes] = set()
    for i, entry in enumerate(doc["keys"]):
        if not isinstance(entry, dict):
            raise KeysFileError(f"{where}: keys[{i}] is not an object")
        key_id, digest_hex = entry.get("id"), entry.get("sha256")
        models, admin, created = entry.get("models"), entry.get("admin", False), entry.get("created_at", "")
        if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
            raise KeysFileError(f"{where}: keys[{i}] has a missing or invalid 'id'")
        if not isinstance(digest_hex, str) or not _SHA256_HEX_RE.match(digest_hex):
            raise KeysFileError(f"{where}: key {key_id!r} has no valid 'sha256' (64 lower-case hex digits)")
        if not isinstance(models, list) or not isinstance(admin, bool) or not isinstance(created, str):
            raise KeysFileError(f"{where}: key {key_id!r} needs 'models' (list), 'admin' (bool)")
        try:
            patterns = validate_model_patterns(models)
        except InvalidKeySpec as e:
            raise KeysFileError(f"{where}: key {key_id!r}: {e.message}") from None
        digest = bytes.fromhex(digest_hex)
        if key_id in ids:
            raise KeysFileError(f"{where}: key id {key_id!r} appears twice")
        if digest in digests:
            raise KeysFileError(f"{where}: key {key_id!r} has the same sha256 as another key")
        ids.add(key_id)
        digests.add(digest)
        records.append(KeyRecord(key_id, admin, patterns, created, digest))
    return records


def _read_keys_file(path: Path) -> list[KeyRecord]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeysFileError(f"keys file not found: {path}") from None
    except OSError as e:
        raise KeysFileError(f"cannot read keys file {path}: {e.strerror or e}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise KeysFileError(f"{path}: not valid JSON ({e})") from None
    return _parse_keys_document(doc, str(path))


def _record_to_json(record: KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "sha256": record.digest.hex(),
        "models": list(record.models),
        "admin": record.admin,
        "created_at": record.created_at,
    }


def _write_keys_file(path: Path, records: Sequence[KeyRecord]) -> None:
    """Write atomically: a 0600 temp file in the same directory, fsync, rename over ``path``."""
    body = json.dumps({"keys": [_record_to_json(r) for r in records]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Serialise concurrent ``bundle keys`` edits of one file: an flock on its directory (no lock file
    left behind)."""
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(dir_fd)


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def create_key(path: Path | str, key_id: str, models: Iterable[str], admin: bool = False) -> str:
    """Add a new key to the keys file (creating the file if needed) and return its plaintext, the only
    time it exists anywhere. Raises ``InvalidKeySpec`` (bad id or pattern), ``DuplicateKeyId``, or
    ``KeysFileError`` when an existing file is broken (it is never overwritten then)."""
    path = Path(path)
    validate_key_id(key_id)
    patterns = validate_model_patterns(models)
    with _exclusive(path):
        records = _read_keys_file(path) if path.exists() else []
        if any(r.id == key_id for r in records):
            raise DuplicateKeyId(f"a key with id {key_id!r} already exists in {path}")
        key = generate_key()
        digest = hashlib.sha256(key.encode()).digest()
        records.append(KeyRecord(key_id, admin, patterns, _utc_now(), digest))
        _write_keys_file(path, records)
    return key


def list_keys(path: Path | str) -> list[KeyRecord]:
    """Every key in the file, in file order. Raises ``KeysFileError`` if it is missing or broken."""
    return _read_keys_file(Path(path))


def revoke_key(path: Path | str, key_id: str) -> KeyRecord:
    """Remove a key from the file and return its record; running gateways stop accepting it within about
    a second. Raises ``UnknownKeyId`` if no key has that id."""
    path = Path(path)
    with _exclusive(path):
        records = _read_keys_file(path)
        kept = [r for r in records if r.id != key_id]
        if len(kept) == len(records):
            raise UnknownKeyId(f"no key with id {key_id[:70]!r} in {path}")
        _write_keys_file(path, kept)
    return next(r for r in records if r.id == key_id)


# --- the gateway side --------------------------------------------------------------------------------------


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class KeyStore:
    """The gateway's view of a keys file.

    The file is read at construction (a missing or broken file raises ``KeysFileError``: the gateway does
    not start with it). Afterwards ``authenticate`` checks, at most once per ``check_interval_s``, whether
    the file's (mtime_ns, size, inode) changed, so the hot path costs a clock read most of the time. The
    inode catches a rename over the file and a Kubernetes Secret update (a symlink swap). A changed file
    that cannot be read or parsed is logged as an error and the last good set of keys stays in force.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        check_interval_s: float = RELOAD_CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._interval = check_interval_s
        self._clock = clock
        self._signature = _file_signature(self.path)
        self._by_digest = self._index(_read_keys_file(self.path))
        if not self._by_digest:
            logger.warning("keys file %s holds no keys: every request will be refused (401)", self.path)
        self._next_check = clock() + check_interval_s
        self._reload_lock = threading.Lock()

    @staticmethod
    def _index(records: Iterable[KeyRecord]) -> dict[bytes, KeyRecord]:
        return {r.digest: r for r in records}

    @property
    def records(self) -> list[KeyRecord]:
        """The keys in force now."""
        return list(self._by_digest.values())

    def authenticate(self, presented: str | None) -> KeyRecord:
        """The record of the presented key, or ``Unauthenticated``.

        The presented key is hashed first and the digest looked up in a dict, then compared with
        ``hmac.compare_digest``. Hashing first is what makes this safe against timing attacks: the
        dict lookup and any early-exit comparison only ever see sha256(presented), never the stored key
        or anything an attacker can steer byte by byte. Learning that a digest shares a prefix with a
        stored digest gives nothing towards a key that produces it (that is a preimage attack on
        sha256), and the keys themselves carry 256 random bits, so they cannot be guessed either.
        ``compare_digest`` keeps the final comparison constant-time all the same.
        """
        if not presented:
            raise Unauthenticated("missing API key")
        if len(presented) > MAX_PRESENTED_KEY_LENGTH or not presented.isascii():
            raise Unauthenticated("invalid API key")
        self._maybe_reload()
        digest = hashlib.sha256(presented.encode()).digest()
        record = self._by_digest.get(digest)
        if record is None or not hmac.compare_digest(record.digest, digest):
            raise Unauthenticated("invalid API key")
        return record

    def _maybe_reload(self) -> None:
        now = self._clock()
        if now < self._next_check:
            return
        # One thread checks; the others keep using the current set rather than wait on the disk.
        if not self._reload_lock.acquire(blocking=False):
            return
        try:
            self._next_check = now + self._interval
            self.reload_if_changed()
        finally:
            self._reload_lock.release()

    def reload_if_changed(self) -> bool:
        """Re-read the file if its signature changed; True when a new set of keys is in force."""
        signature = _file_signature(self.path)
        if signature == self._signature:
            return False
        # Remember the signature even when the read fails: a broken file is reported once, not every
        # second, and the next change of the file is picked up.
        self._signature = signature
        try:
            records = _read_keys_file(self.path)
        except KeysFileError as e:
            logger.error("keys file changed but cannot be used, keeping the previous keys: %s", e.message)
            return False
        self._by_digest = self._index(records)
        logger.info("keys file reloaded: %d keys", len(records))
        return True
