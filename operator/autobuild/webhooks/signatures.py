"""Delivery verification: HMAC-SHA256 signatures (GitHub, Bitbucket Cloud) and GitLab's token.

Every comparison is constant-time (:func:`hmac.compare_digest`). An empty or missing secret
verifies nothing: an HMAC keyed with an empty secret is one anybody can compute.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

__all__ = ["sign_sha256", "verify_sha256", "verify_token"]

_PREFIX: Final = "sha256="


def sign_sha256(secret: bytes, body: bytes) -> str:
    """The signature header value a sender computes: ``sha256=<hex HMAC-SHA256 of body>``."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_sha256(secret: bytes | None, body: bytes, header: str | None) -> bool:
    """True if ``header`` (``X-Hub-Signature-256`` / Bitbucket's ``X-Hub-Signature``) signs body."""
    if not secret or not header:
        return False
    # Hex digits are case-insensitive; senders use lowercase, tolerate either.
    given = header.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(sign_sha256(secret, body).encode("ascii"), given)


def verify_token(secret: bytes | None, header: str | None) -> bool:
    """True if GitLab's ``X-Gitlab-Token`` header equals the secret."""
    if not secret or header is None:
        return False
    return hmac.compare_digest(secret, header.encode("utf-8", "replace"))
