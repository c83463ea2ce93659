"""HTTP Basic authentication for /sdapi/v1 (--api-auth user:pass[,user2:pass2]), as A1111 does it."""

# No `from __future__ import annotations`: FastAPI must see the real Annotated[..., Depends(scheme)]
# of the closure below (a string annotation could not reach the local `scheme`).

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from pipelines.launch_flags import parse_credentials as parse_flag_credentials

Credentials = list[tuple[str, str]]


def parse_credentials(text: str | None) -> Credentials | None:
    """--api-auth "user:pass,user2:pass2" -> credentials (None when unset); ValueError when malformed."""
    return parse_flag_credentials(text, "--api-auth")


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
