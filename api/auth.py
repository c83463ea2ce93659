"""HTTP Basic authentication for /sdapi/v1 (and /docs, /openapi.json), as A1111 does it, plus what this
server adds: a log-in throttle per client, and (beside the web UI) the UI's log-in cookie accepted instead.

Which credentials apply is decided in pipelines/launch_flags.py (api_credentials: --api-auth, else
--gradio-auth); server_auth.py wires the UI's cookie and the shared throttle when the API runs beside Gradio.
"""

# No `from __future__ import annotations`: FastAPI must see the real Annotated[..., Depends(scheme)]
# of the closure below (a string annotation could not reach the local `scheme`).

import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from pipelines.launch_flags import parse_credentials as parse_flag_credentials

log = logging.getLogger("auth")

Credentials = list[tuple[str, str]]
SessionUser = Callable[[Request], "str | None"]  # the user a request's UI log-in cookie belongs to, or None


def parse_credentials(text: str | None) -> Credentials | None:
    """--api-auth "user:pass,user2:pass2" -> credentials (None when unset); ValueError when malformed."""
    return parse_flag_credentials(text, "--api-auth")


class LoginThrottle:
    """After `max_failures` wrong log-ins from one client within `window_s`, that client is refused (429)
    for `lockout_s` seconds, right credentials included, so a password cannot be guessed at speed.

    Shared by HTTP Basic and the web UI's /login. Thread-safe; memory bounded by pruning old entries.
    """

    def __init__(self, max_failures: int = 5, window_s: float = 60.0, lockout_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000):
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.clock = clock
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again (0: now)."""
        with self._lock:
            left = self._locked_until.get(client, 0.0) - self.clock()
            if left <= 0:
                self._locked_until.pop(client, None)
                return 0.0
            return left

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) >= self.max_clients:
                self._prune(now)
            times = self._failures.setdefault(client, deque())
            times.append(now)
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.max_failures:
                self._locked_until[client] = now + self.lockout_s
                times.clear()
                log.warning("%d failed log-ins from %s within %.0f s: refused for %.0f s", self.max_failures,
                            client, self.window_s, self.lockout_s)

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - self.window_s]:
            del self._failures[key]
        for key in [k for k, until in self._locked_until.items() if until <= now]:
            del self._locked_until[key]
        if len(self._failures) >= self.max_clients:  # still full: forget the oldest half
            for key in list(self._failures)[: self.max_clients // 2]:
                del self._failures[key]

    def refuse_if_locked(self, client: str) -> None:
        """HTTPException 429 (with Retry-After) while `client` is locked out."""
        left = self.retry_after(client)
        if left > 0:
            raise HTTPException(status_code=429, detail=f"Too many failed log-ins: try again in {math.ceil(left)} s",
                                headers={"Retry-After": str(math.ceil(left))})


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _matches(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def credentials_match(known: Credentials, username: str, password: str) -> bool:
    # Compare against every entry (no early exit) so timing says nothing about which part was wrong.
    ok = False
    for user, secret in known:
        ok |= _matches(username, user) & _matches(password, secret)
    return ok


def basic_auth_dependency(credentials: Credentials, *, session_user: SessionUser | None = None,
                          throttle: LoginThrottle | None = None) -> Callable[..., None]:
    """A FastAPI dependency: 401 + WWW-Authenticate unless the request carries one of `credentials` (or, with
    `session_user`, a valid UI log-in cookie); 429 while its client is locked out by `throttle`."""
    scheme = HTTPBasic(auto_error=False, realm="sdapi")
    known = list(credentials)
    throttle = throttle if throttle is not None else LoginThrottle()

    def check(request: Request, given: Annotated[HTTPBasicCredentials | None, Depends(scheme)]) -> None:
        if session_user is not None and session_user(request) is not None:
            return
        client = client_address(request)
        if given is not None:
            throttle.refuse_if_locked(client)
            if credentials_match(known, given.username, given.password):
                return
            throttle.failed(client)
            log.warning("API: wrong credentials for user %r from %s (%s %s)", given.username, client,
                        request.method, request.url.path)
        raise HTTPException(
            status_code=401,
            detail="Incorrect username or password" if given is not None else "Not authenticated",
            headers={"WWW-Authenticate": "Basic"},
        )

    return check
