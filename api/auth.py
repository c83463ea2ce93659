"""HTTP Basic authentication for /sdapi/v1 (--api-auth user:pass[,user2:pass2]), as A1111 does it."""

# No `from __future__ import annotations`: FastAPI must see the real Annotated[..., Depends(scheme)]
# of the closure below (a string annotation could not reach the local `scheme`).

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials

Credentials = list[tuple[str, str]]


def parse_credentials(text: str | None) -> Credentials | None:
    """ "user:pass,user2:pass2" -> [("user", "pass"), ("user2", "pass2")]; None when unset or blank.

    Each entry splits at its first ':' (a password may contain ':', not ','). A malformed entry raises
    ValueError naming it, so a typo in --api-auth stops start-up instead of leaving the API open.
    """
    if text is None or not text.strip():
        return None
    credentials = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user:
            raise ValueError(f"--api-auth: {entry!r} is not user:password")
        credentials.append((user, password))
    return credentials or None


def _matches(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def basic_auth_dependency(credentials: Credentials) -> Callable[..., None]:
    """A FastAPI dependency: 401 + WWW-Authenticate unless the request carries one of `credentials`."""
    scheme = HTTPBasic(auto_error=False, realm="sdapi")
    known = list(credentials)

    def check(given: Annotated[HTTPBasicCredentials | None, Depends(scheme)]) -> None:
        ok = False
        if given is not None:
            # Compare against every entry (no early exit) so timing says nothing about which part was wrong.
            for user, password in known:
                ok |= _matches(given.username, user) & _matches(given.password, password)
        if not ok:
            raise HTTPException(
                status_code=401,
                detail="Incorrect username or password",
                headers={"WWW-Authenticate": "Basic"},
            )

    return check
