"""Account use cases: register, log in, authenticate a presented token, log out, the caller's
API tokens (list, create, revoke)."""

from __future__ import annotations

from uuid import UUID

from chronoverse.accounts import Principal
from chronoverse.errors import NotFoundError
from services.server.context import ServerContext
from services.server.schemas import ApiTokenCreate, ApiTokenOut, Credentials, TokenOut, UserOut

# The name of a token issued by the dashboard's login form: its session, revoked at sign-out.
WEB_SESSION = "web session"


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

    def login(
        self, credentials: Credentials, *, client: str | None = None, token_name: str = "login"
    ) -> TokenOut:
        """A new token for these credentials, named ``token_name`` (the dashboard names its
        sessions :data:`WEB_SESSION`)."""
        self._throttle.attempt("login", client=client, email=credentials.email)
        issued = self._accounts.login(
            credentials.email, credentials.password, token_name=token_name
        )
        return TokenOut(token=issued.token, expires_at=issued.expires_at)

    def authenticate(self, authorization: str | None) -> Principal:
        """Who an ``Authorization: Bearer <token>`` value (header or metadata) stands for."""
        return self._accounts.authenticate(authorization)

    def logout(self, who: Principal) -> None:
        self._accounts.revoke(who)

    def tokens(self, who: Principal) -> list[ApiTokenOut]:
        """The caller's tokens in force (sessions included), newest first."""
        return [
            ApiTokenOut(
                id=t.id,
                name=t.name,
                created_at=t.created_at,
                last_used_at=t.last_used_at,
                expires_at=t.expires_at,
            )
            for t in self._accounts.tokens(who.user_id)
        ]

    def create_token(self, who: Principal, request: ApiTokenCreate) -> TokenOut:
        """A new API token for the caller; the token is in the answer only, never stored."""
        issued = self._accounts.create_token(who.user_id, token_name=request.name)
        return TokenOut(token=issued.token, expires_at=issued.expires_at)

    def revoke_token(self, who: Principal, token_id: UUID) -> None:
        """Revoke one of the caller's tokens; NotFoundError if not theirs or not in force."""
        if not self._accounts.revoke_token(who.user_id, token_id):
            raise NotFoundError("token", str(token_id))
