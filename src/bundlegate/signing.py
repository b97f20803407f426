"""Ed25519 signatures of bundle manifests: ``bundle sign`` and ``bundle serve --trusted-keys``.

A signature covers ``bundle.json`` byte for byte, and through its ``files`` digests every file of the
bundle, so one signature per version vouches for all of it. It lives beside the manifest::

    bundle.json.sig     ed25519 <key id> <base64 signature>

Keys: a private key is a PKCS#8 PEM file (``bundle signing-key create``); the gateway's trusted keys
file holds public keys, one a line, as ``ed25519 <base64 raw key> [comment]`` (``#`` starts a comment
line). A key id is the first 16 hex digits of the sha256 of the raw public key.

The ``cryptography`` package (the ``sign`` extra) is imported only here, and only when a key is read
or a signature made or checked, so a gateway without trusted keys does not need it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundlegate.errors import BundleError, SignatureError

SIGNATURE_FILE = "bundle.json.sig"
SCHEME = "ed25519"
MAX_KEYS_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TrustedKeys:
    """Public keys by key id (raw 32-byte Ed25519 keys)."""

    by_id: dict[str, bytes]


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise BundleError(
            "bundle signatures need the 'cryptography' package: pip install 'bundlegate[sign]'"
        ) from None
    return ed25519


def read_trusted_keys(path: Path) -> TrustedKeys:
    """The public keys of a trusted keys file; ``BundleError`` naming the line of a bad one."""
    try:
        text = Path(path).read_bytes()[:MAX_KEYS_FILE_BYTES].decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError(f"cannot read the trusted keys file {path}: {e}") from None
    keys: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            raw = base64.b64decode(fields[1], validate=True) if fields[0] == SCHEME else b""
        except (IndexError, binascii.Error):
            raw = b""
        if len(raw) != 32:
            raise BundleError(f"{path} line {number}: expected 'ed25519 <base64 public key> [comment]'")
        keys[key_id(raw)] = raw
    if not keys:
        raise BundleError(f"{path}: no trusted keys in the file")
    return TrustedKeys(keys)


def check_signature(manifest_raw: bytes, signature_line: bytes | None, trusted: TrustedKeys) -> None:
    """Raise ``SignatureError`` unless ``signature_line`` is a valid signature of ``manifest_raw`` by
    one of ``trusted``."""
    if signature_line is None:
        raise SignatureError(f"no {SIGNATURE_FILE}: the gateway serves only bundles signed by a trusted key")
    fields = signature_line.decode("ascii", "replace").split()
    if len(fields) != 3 or fields[0] != SCHEME:
        raise SignatureError(f"{SIGNATURE_FILE} is not 'ed25519 <key id> <signature>'")
    public_raw = trusted.by_id.get(fields[1])
    if public_raw is None:
        raise SignatureError(f"{SIGNATURE_FILE} is by key {fields[1][:16]!r}, which is not trusted")
    try:
        signature = base64.b64decode(fields[2], validate=True)
    except binascii.Error:
        raise SignatureError(f"{SIGNATURE_FILE}: the signature is not base64") from None
    ed25519 = _crypto()
    from cryptography.exceptions import InvalidSignature

    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, manifest_raw)
    except InvalidSignature:
        raise SignatureError(
            f"{SIGNATURE_FILE} does not match bundle.json (edited, or signed by another key)"
        ) from None


def create_signing_key(path: Path) -> str:
    """Write a new private key to ``path`` (PEM, mode 0600, never overwriting) and return its public
    key as a trusted keys file line."""
    ed25519 = _crypto()
    from cryptography.hazmat.primitives import serialization

    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_line(private)


def public_line(private: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{SCHEME} {base64.b64encode(raw).decode()} {key_id(raw)}"


def load_private_key(path: Path) -> Any:
    ed25519 = _crypto()
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise BundleError(f"cannot read the signing key {path}: {e}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 private key")
    return key


def signature_line(manifest_raw: bytes, private: Any) -> bytes:
    """The content of ``bundle.json.sig`` for ``manifest_raw`` signed with ``private``."""
    from cryptography.hazmat.primitives import serialization

    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signature = base64.b64encode(private.sign(manifest_raw)).decode()
    return f"{SCHEME} {key_id(raw)} {signature}\n".encode()


def sign_bundle(bundle_dir: Path, private_key_path: Path) -> Path:
    """Write ``bundle.json.sig`` in ``bundle_dir`` (replacing an older one atomically)."""
    private = load_private_key(private_key_path)
    raw = (Path(bundle_dir) / "bundle.json").read_bytes()
    target = Path(bundle_dir) / SIGNATURE_FILE
    tmp = target.with_name(f".{SIGNATURE_FILE}.{os.getpid()}")
    tmp.write_bytes(signature_line(raw, private))
    os.replace(tmp, target)
    return target
