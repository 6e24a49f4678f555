"""``liveroom token``: mint a token for any role with the server's own secret."""

from __future__ import annotations

import sys

from .accounts import account_id, normalize_phone
from .clock import now_ms
from .exceptions import InvalidInput
from .identity import Role, TokenSigner, User, new_user_id, validate_name
from .payload import ID_PATTERN
from .settings import Settings

__all__ = ["run_token"]


def run_token(settings: Settings, *, role: str, name: str, user_id: str | None = None,
              ttl_s: int | None = None, phone: str | None = None) -> int:
    """Print a token; with ``phone``, of the buyer account of that phone (the same user id the
    server gives it after a one-time code)."""
    secret = settings.resolve_secret()
    try:
        clean_name = validate_name(name)
        if user_id is not None and not ID_PATTERN.match(user_id):
            raise InvalidInput("--id must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if phone is not None:
            if user_id is not None:
                raise InvalidInput("--phone gives the account's own id: leave out --id")
            user_id = account_id(secret, normalize_phone(phone))
    except InvalidInput as exc:
        print(f"liveroom token: {exc.message}", file=sys.stderr)
        return 2
    user = User(id=user_id or new_user_id(), name=clean_name, role=Role(role),
                phone_verified=phone is not None)
    signer = TokenSigner(secret, settings.token_ttl_s, now_ms)
    # The note goes to stderr so that TOKEN=$(liveroom token ...) captures the token alone.
    print(f"# {user.role.value} {user.name} ({user.id}), secret from "
          f"{'LIVEROOM_SECRET' if settings.secret else settings.secret_path}", file=sys.stderr)
    print(signer.issue(user, ttl_s))
    return 0
