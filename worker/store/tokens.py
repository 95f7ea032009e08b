"""API tokens for the web front end (`mils token create NAME`, MILS_WEB_AUTH=token).

Only the SHA-256 of a token is stored: tokens are 256-bit random strings, so a plain hash cannot
be brute-forced, and a leaked database leaks no usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.store.schema import ApiToken, utcnow

TOKEN_PREFIX = "mils_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str) -> str:
    """A new token; the only time it is ever seen in clear."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_sha256=_digest(token)))
    return token


def find_token(session: Session, token: str) -> ApiToken | None:
    """The active token with this value, or None (unknown or revoked)."""
    digest = _digest(token)
    found = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == digest,
                                                  ApiToken.revoked_at.is_(None)))
    # The lookup is by hash (an index), the final check in constant time.
    return found if found and hmac.compare_digest(found.token_sha256, digest) else None


def revoke_token(session: Session, token_id: int) -> bool:
    """False when there is no active token with this id."""
    token = session.get(ApiToken, token_id)
    if token is None or token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    return True


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))
