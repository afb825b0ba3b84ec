"""The RS256 signing key: loaded from a PEM file, generated once outside production.

Several gunicorn workers may start at the same moment. The key file is created with
O_CREAT|O_EXCL, so exactly one process writes it and the others load that same key;
otherwise each worker would sign with its own key and JWKS would disagree with tokens.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger(__name__)

KEY_BITS = 2048
ALGORITHM = "RS256"
# How long a reader waits for a key file another worker is still writing.
_PARTIAL_READ_WAIT_SECONDS = 5.0


class SigningKeyError(RuntimeError):
    """The signing key is missing (production) or unusable: a startup error, never a fallback."""


@dataclasses.dataclass(frozen=True)
class SigningKey:
    """A private RSA key with its RFC 7638 key id; tokens carry the kid in their header."""

    private_key: rsa.RSAPrivateKey
    kid: str

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The JWKS entry the gateway verifies tokens with."""
        return {
            **public_jwk_members(self.public_key),
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
        }


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_jwk_members(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """The required members of an RSA JWK (RFC 7518 §6.3.1)."""
    numbers = public_key.public_numbers()
    return {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint: SHA-256 of the required members, sorted, without whitespace."""
    required = {
        "RSA": ("e", "kty", "n"),
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
    }
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode("utf-8")
    digest = hashlib.sha256(canonical).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def signing_key_from_private(private_key: rsa.RSAPrivateKey) -> SigningKey:
    return SigningKey(private_key, jwk_thumbprint(public_jwk_members(private_key.public_key())))


def load_signing_key(path: str | os.PathLike[str], *, env: str) -> SigningKey:
    """Load the key at `path`; outside production create it first if it does not exist."""
    key_path = Path(path)
    if not key_path.exists():
        if env == "production":
            raise SigningKeyError(
                f"JWT private key file {key_path} does not exist; in production the key must "
                "be provided (JWT_PRIVATE_KEY_FILE), it is never generated"
            )
        if _create_key_file(key_path):
            log.info("generated a new RS256 signing key at %s", key_path)
    return _read_key_file(key_path)


def _create_key_file(path: Path) -> bool:
    """Write a fresh key unless another process got there first; True if we wrote it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        # A half-written key would poison every later start; remove it.
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return True


def _read_key_file(path: Path) -> SigningKey:
    deadline = time.monotonic() + _PARTIAL_READ_WAIT_SECONDS
    while True:
        data = path.read_bytes()
        try:
            private_key = serialization.load_pem_private_key(data, password=None)
            break
        except (ValueError, TypeError) as exc:
            # Another worker may have created the file and still be writing it.
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise SigningKeyError(
                f"JWT private key file {path} is not an unencrypted PEM private key"
            ) from exc
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise SigningKeyError(f"JWT private key file {path} must hold an RSA key (RS256)")
    if private_key.key_size < KEY_BITS:
        raise SigningKeyError(
            f"JWT private key in {path} is {private_key.key_size} bits; need 2048+"
        )
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("JWT private key file %s is readable by group/others; chmod 600 it", path)
    return signing_key_from_private(private_key)
