"""Password hashing with argon2id: a deliberately slow KDF, unlike the fast hash for API keys.

Passwords are low-entropy, so a stolen hash must be expensive to brute-force; API keys
and refresh tokens are 256-bit random strings, where SHA-256 is enough.
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check (inside argon2); a corrupt stored hash counts as a mismatch."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with older parameters and should be upgraded on login."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def burn_verification(password: str) -> None:
    """Spend the time of one verification, so unknown usernames answer as slowly as known ones."""
    verify_password(_dummy_hash(), password)


def unusable_password_hash() -> str:
    """A valid hash of a random secret nobody knows: the account exists but cannot log in."""
    return _hasher.hash(secrets.token_urlsafe(32))
