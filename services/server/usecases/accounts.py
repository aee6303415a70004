"""Account use cases: register, log in, authenticate a presented token, log out."""

from __future__ import annotations

from chronoverse.accounts import Principal
from services.server.context import ServerContext
from services.server.schemas import Credentials, TokenOut, UserOut


class AccountCases:
    def __init__(self, context: ServerContext) -> None:
        self._accounts = context.accounts
        self._throttle = context.throttle
        self._registration = context.settings.registration

    def register(self, credentials: Credentials, *, client: str | None = None) -> UserOut:
        """Create an account, as the registration policy allows; ``client`` is the caller's
        address, counted against the rate limits with the email."""
        self._throttle.attempt("register", client=client, email=credentials.email)
        user = self._accounts.register(
            credentials.email, credentials.password, policy=self._registration
        )
        return UserOut(id=user.id, email=user.email, created_at=user.created_at)

    def login(self, credentials: Credentials, *, client: str | None = None) -> TokenOut:
        self._throttle.attempt("login", client=client, email=credentials.email)
        issued = self._accounts.login(credentials.email, credentials.password)
        return TokenOut(token=issued.token, expires_at=issued.expires_at)

    def authenticate(self, authorization: str | None) -> Principal:
        """Who an ``Authorization: Bearer <token>`` value (header or metadata) stands for."""
        return self._accounts.authenticate(authorization)

    def logout(self, who: Principal) -> None:
        self._accounts.revoke(who)
