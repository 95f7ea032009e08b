"""API tokens for the web front end (`mils token create NAME --role ROLE`, MILS_WEB_AUTH=token),
their roles (schema.TOKEN_ROLES; what each may do is decided in web.auth) and the limit on a
token's jobs in flight (MILS_TOKEN_MAX_ACTIVE).

Only the SHA-256 of a token is stored: tokens are 256-bit random strings, so a plain hash cannot
be brute-forced, and a leaked database leaks no usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.store.schema import TOKEN_ROLES, ApiToken, Job, JobStatus, utcnow

TOKEN_PREFIX = "mils_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class QuotaExceeded(Exception):
    """A submission would take its token over MILS_TOKEN_MAX_ACTIVE jobs queued or running (the
    web answers 429 with Retry-After); nothing was stored."""

    retry_after = 30  # seconds: about a step of a small job, after which a slot may be free


def create_token(session: Session, name: str, role: str = "user") -> str:
    """A new token with `role` (one of TOKEN_ROLES, else ValueError); the only time it is ever
    seen in clear."""
    if role not in TOKEN_ROLES:
        raise ValueError(f"a token's role is one of {', '.join(TOKEN_ROLES)}, not {role!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_sha256=_digest(token), role=role))
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


def active_jobs(session: Session, token_id: int) -> int:
    """The token's jobs queued (a batch's held ones too) or running."""
    return session.scalar(select(func.count()).select_from(Job).where(
        Job.token_id == token_id, Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))) or 0


def check_quota(session: Session, token_id: int | None, adding: int, limit: int | None) -> None:
    """QuotaExceeded when `adding` more jobs would take the token over `limit` jobs queued or
    running (None: no limit; admins have none, and neither has the CLI: `token_id` None). The
    token's row is locked until the caller's transaction ends, so two submissions of one token
    never both pass on the same count."""
    if token_id is None or limit is None:
        return
    token = session.scalar(select(ApiToken).where(ApiToken.id == token_id).with_for_update())
    if token is None or token.role == "admin":
        return
    active = active_jobs(session, token_id)
    if active + adding > limit:
        raise QuotaExceeded(f"token {token.name!r} has {active} job(s) queued or running and this submission "
                            f"adds {adding}: over its limit of {limit} (MILS_TOKEN_MAX_ACTIVE); try again "
                            "when some have finished, or cancel some")
