"""The sharing secrets: the pseudonym key and the Ed25519 key signing the evidence chain.

Each comes from its setting (``CITYPULSE_SHARE_PSEUDONYM_KEY``,
``CITYPULSE_SHARE_SIGNING_KEY``: base64 of 32 bytes) or, when unset, from a random key
file created once under ``DATA_DIR/share/`` (mode 0600).  Secrets are never logged.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from citypulse.settings import Settings


def _key_file(settings: Settings, name: str) -> bytes:
    path = Path(settings.data_dir) / "share" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return _decode(path.read_text().strip(), str(path))


def _decode(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{where}: expected base64 of 32 random bytes "
                         "(make one with: python -c \"import base64,os;"
                         "print(base64.b64encode(os.urandom(32)).decode())\")")
    return raw


def pseudonym_key(settings: Settings) -> bytes:
    """The deployment's pseudonym master key."""
    if settings.share_pseudonym_key is not None:
        return _decode(settings.share_pseudonym_key.get_secret_value(),
                       "CITYPULSE_SHARE_PSEUDONYM_KEY")
    return _key_file(settings, "pseudonym.key")


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The Ed25519 key signing chain heads."""
    if settings.share_signing_key is not None:
        seed = _decode(settings.share_signing_key.get_secret_value(),
                       "CITYPULSE_SHARE_SIGNING_KEY")
    else:
        seed = _key_file(settings, "signing.key")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw public key, base64 (what a verifier needs)."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(pub.public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)).decode()


def load_public_key(b64: str) -> Ed25519PublicKey:
    """An Ed25519 public key from its base64 raw form."""
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64))
