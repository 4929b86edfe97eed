"""Encryption at rest for lab secrets (private keys, passwords).

Fernet (AES-128-CBC + HMAC-SHA256) through ``MultiFernet``: the first key
encrypts, every key decrypts, so keys can be rotated by putting a new key
first and running ``manage.py hastexo_rotate_keys``.  Keys come from the
``encryption_keys`` setting (Fernet keys, URL-safe base64 of 32 bytes) or,
when it is empty, are derived from Django's ``SECRET_KEY``.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .conf import ConfigurationError, Settings, get_settings

__all__ = ["InvalidToken", "decrypt", "encrypt", "fernet_for", "generate_key", "rotate"]


def generate_key() -> str:
    """A new random key for the ``encryption_keys`` setting."""
    return Fernet.generate_key().decode()


def fernet_for(settings: Settings) -> MultiFernet:
    """The ``MultiFernet`` for ``settings``; raises ConfigurationError for a bad key."""
    keys = list(settings["encryption_keys"])
    fernets = []
    for index, key in enumerate(keys):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"encryption_keys[{index}]", "not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
    if not fernets:
        fernets.append(Fernet(base64.urlsafe_b64encode(settings.derived_key("encryption"))))
    return MultiFernet(fernets)


def encrypt(plaintext: str | None) -> str | None:
    """Encrypt ``plaintext`` with the first key; ``None`` stays ``None``."""
    if plaintext is None:
        return None
    return fernet_for(get_settings()).encrypt(plaintext.encode()).decode()


def decrypt(token: str | None) -> str | None:
    """Decrypt ``token`` with any configured key; raises ``InvalidToken`` if none fits."""
    if token is None or token == "":
        return None
    return fernet_for(get_settings()).decrypt(token.encode()).decode()


def rotate(token: str | None) -> str | None:
    """Re-encrypt ``token`` with the first (newest) key."""
    if not token:
        return token
    return fernet_for(get_settings()).rotate(token.encode()).decode()
