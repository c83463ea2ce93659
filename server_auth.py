"""One auth rule for the whole server: with --gradio-auth or --api-auth, nothing answers without credentials.

    web UI (Gradio's routes)      Gradio's log-in page: --gradio-auth, else --api-auth
    /sdapi/v1, /docs, /openapi.json   HTTP Basic: --api-auth, else --gradio-auth; or the UI's log-in cookie
    failed log-ins (either way)   5 from one client within a minute -> 429 for a minute

The credentials per front end come from pipelines/launch_flags.py (ui_credentials, api_credentials); Gradio
gets the UI's as its `auth` at launch (app.launch_kwargs). This module adds what Gradio lacks, on its app once
it is launched: the throttle on its /login, and the check of its log-in cookie for the API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute, APIRouter
from fastapi.security import OAuth2PasswordRequestForm

from api.auth import LoginThrottle, basic_auth_dependency, client_address
from api.docs import OPENAPI_PATH, remove_routes
from pipelines.launch_flags import Settings, api_credentials, ui_credentials

log = logging.getLogger("auth")

LOGIN_PATHS = ("/login", "/login/")


def _same_origin(request: Request) -> bool:
    """A cookie rides along on cross-site requests too: accept it only from the UI's own pages (no CSRF)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if not origin:
        return True
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    return urlsplit(origin).netloc in hosts


def gradio_session_user(app: Any) -> Callable[[Request], str | None]:
    """The user a request's Gradio log-in cookie belongs to (None without a valid one), checked the way
    gradio.routes' get_current_user does: the access-token cookie names app.tokens' keys."""
    names = (f"access-token-{app.cookie_id}", f"access-token-unsecure-{app.cookie_id}")

    def user(request: Request) -> str | None:
        if not _same_origin(request):
            return None
        for name in names:
            token = request.cookies.get(name)
            if token and token in app.tokens:
                return app.tokens[token]
        return None

    return user


def throttle_gradio_login(app: FastAPI, throttle: LoginThrottle) -> None:
    """Put `throttle` in front of Gradio's POST /login: a locked-out client gets 429 before its password is
    checked; every refused log-in (Gradio's 400) counts as a failure."""
    originals = {r.path: r for r in app.router.routes
                 if isinstance(r, APIRoute) and r.path in LOGIN_PATHS and "POST" in r.methods}
    if set(originals) != set(LOGIN_PATHS):
        raise RuntimeError(f"Gradio's log-in routes {LOGIN_PATHS} were not found: cannot throttle log-ins")
    login = originals["/login"].endpoint

    async def throttled_login(request: Request, form_data: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Any:
        client = client_address(request)
        throttle.refuse_if_locked(client)
        try:
            return await login(request=request, form_data=form_data)
        except HTTPException as exc:
            if exc.status_code == 400:
                throttle.failed(client)
                log.warning("UI: wrong credentials for user %r from %s", form_data.username, client)
            raise

    router = APIRouter()
    for path in LOGIN_PATHS:
        router.add_api_route(path, throttled_login, methods=["POST"], include_in_schema=False)
    replacements = {r.path: r for r in router.routes}
    app.router.routes[:] = [replacements.get(r.path, r) if r in originals.values() else r
                            for r in app.router.routes]


def protect_gradio_app(app: FastAPI, settings: Settings) -> Callable[..., None] | None:
    """Secure a launched Gradio app by the rule above. Returns the auth dependency for the API routes
    (None when the server runs without credentials)."""
    if ui_credentials(settings) is None:
        return None
    throttle = LoginThrottle()
    throttle_gradio_login(app, throttle)
    remove_routes(app, {OPENAPI_PATH})  # FastAPI's default lists Gradio's routes to anyone; --api puts ours
    return basic_auth_dependency(api_credentials(settings) or [], session_user=gradio_session_user(app),
                                 throttle=throttle)

