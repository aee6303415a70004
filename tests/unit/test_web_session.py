"""The dashboard's CSRF tokens: the same in every server process of an installation, bound to the
session, and changed when the installation's first secret key changes."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request

from chronoverse.secrets import generate_key
from services.server.app import create_app
from services.server.context import ServerContext
from services.server.settings import Settings
from services.server.web.session import csrf_token


def request(app: FastAPI, session: str) -> Request:
    cookie = f"cv_session={session}".encode()
    return Request({"type": "http", "app": app, "headers": [(b"cookie", cookie)]})


def app(secret_keys: str) -> FastAPI:
    return create_app(ServerContext(Settings(secret_keys=secret_keys)))


def test_every_process_of_an_installation_accepts_the_others_tokens() -> None:
    keys = f"{generate_key()},{generate_key()}"
    first, second = app(keys), app(keys)
    token = csrf_token(request(first, "cv_session-a"))
    assert token and token == csrf_token(request(second, "cv_session-a"))
    assert token != csrf_token(request(first, "cv_session-b"))  # bound to the session
    assert csrf_token(request(first, "")) == ""  # no session, no token
    # Rotating the first key out changes every token.
    rotated = app(f"{generate_key()},{keys}")
    assert token != csrf_token(request(rotated, "cv_session-a"))
