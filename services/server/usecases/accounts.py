"""Account use cases: register, log in, authenticate a presented token, log out."""

from __future__ import annotations

from chronoverse.accounts import Principal
from services.server.context import ServerContext
from services.server.schemas import Credentials, TokenOut, UserOut


class AccountCases:
    def __init__(self, context: ServerContext) -> None:
        self._accounts = context.accounts

    def register(self, credentials: Credentials) -> UserOut:
        user = self._accounts.register(credentials.email, credentials.password)
        return UserOut(id=user.id, email=user.email, created_at=user.created_at)

    def login(self, credentials: Credentials) -> TokenOut:
        issued = self._accounts.login(credentials.email, credentials.password)
        return TokenOut(token=issued.token, expires_at=issued.expires_at)

    def authenticate(self, authorization: str | None) -> Principal:
        """Who an ``Authorization: Bearer <token>`` value (header or metadata) stands for."""
        return self._accounts.authenticate(authorization)

    def logout(self, who: Principal) -> None:
        self._accounts.revoke(who)
