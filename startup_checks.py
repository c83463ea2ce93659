"""Checks app.py runs before loading anything: a busy port and an open server are said plainly, at once."""

from __future__ import annotations

import errno
import socket

from pipelines.launch_flags import Settings, api_credentials, ui_credentials

LISTEN_WARNING = (
    "WARNING: {flags} without --gradio-auth or --api-auth: anyone who can reach this machine on port "
    "{port} can use the studio{api} with no password. Add --gradio-auth user:password (it protects the whole "
    "server)."
)


def port_problem(settings: Settings) -> str | None:
    """The message for a port that cannot be bound (None when it is free), checked before models load so
    the user does not wait for a failure, and worded with the flag that fixes it."""
    port = settings.server_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT after a restart counts as free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.server_name, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is in use: pick another with --port"
            return f"cannot listen on {settings.server_name}:{port} ({exc.strerror}): pick another with --port"
    return None


def listen_warning(settings: Settings) -> str | None:
    """A warning when the server is reachable from other machines and asks no one for credentials."""
    if not (settings.listen or settings.share) or ui_credentials(settings) or api_credentials(settings):
        return None
    flags = " and ".join(flag for flag, on in (("--listen", settings.listen), ("--share", settings.share)) if on)
    return LISTEN_WARNING.format(flags=flags, port=settings.server_port,
                                 api=" and its HTTP API" if settings.api or settings.nowebui else "")
