"""Cross-origin requests: A1111's --cors-allow-origins / --cors-allow-origins-regex, and nothing else.

A1111 (modules/initialize_util.py configure_cors_middleware) puts Starlette's CORSMiddleware in front of the
whole server with allow_methods/allow_headers ["*"], allow_credentials True and the flags' origins; without
the flags no foreign origin is allowed. A page of the server's own origin needs no CORS header at all.

Gradio adds its own CORS middleware, which answers any Origin with Access-Control-Allow-Origin and
credentials whenever the server is reached by a name other than localhost (--listen), and any localhost
page when it is: another site's page could then drive the server from the user's browser. `install_cors`
replaces it (and any other CORS middleware) with the flags' policy, as A1111 does after its launch.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware


def cors_options(settings: Any) -> dict[str, Any]:
    """CORSMiddleware's arguments for the launch flags, as A1111 passes them (the flags' values are checked
    when they are parsed: pipelines/launch_flags.py)."""
    origins = [o.strip() for o in (settings.cors_allow_origins or "").split(",") if o.strip()]
    return {"allow_origins": origins, "allow_origin_regex": settings.cors_allow_origins_regex or None,
            "allow_methods": ["*"], "allow_headers": ["*"], "allow_credentials": True}


def install_cors(app: Any, settings: Any, *, replace: str | None = None) -> None:
    """Make the launch flags' CORS policy the only one on `app`, outermost (so pre-flight requests are
    answered before any auth), on an app that may already be serving: its middleware stack is rebuilt.

    `replace`: the class name of a CORS middleware that must be there to be replaced (Gradio's
    CustomCORSMiddleware); RuntimeError when it is not, so a Gradio upgrade cannot silently reopen it."""
    options = cors_options(settings)
    kept = [m for m in app.user_middleware if "CORSMiddleware" not in getattr(m.cls, "__name__", "")]
    names = {getattr(m.cls, "__name__", "") for m in app.user_middleware}
    if replace is not None and replace not in names:
        raise RuntimeError(f"{replace} was not found on the server: cannot replace its CORS policy")
    app.user_middleware[:] = [Middleware(CORSMiddleware, **options), *kept]
    if app.middleware_stack is not None:  # already serving: requests from now on go through the new stack
        app.middleware_stack = app.build_middleware_stack()
