"""/auth: accounts and tokens."""

from fastapi import APIRouter, Response

from services.server.http_errors import ERRORS
from services.server.routes.deps import Auth, Context
from services.server.schemas import Credentials, TokenOut, UserOut

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERRORS)


@router.post("/register", status_code=201, response_model=UserOut, summary="Create an account.")
def register(body: Credentials, context: Context) -> UserOut:
    user = context.accounts.register(body.email, body.password)
    return UserOut(id=user.id, email=user.email, created_at=user.created_at)


@router.post(
    "/login", response_model=TokenOut, summary="Exchange email and password for a bearer token."
)
def login(body: Credentials, context: Context) -> TokenOut:
    issued = context.accounts.login(body.email, body.password)
    return TokenOut(token=issued.token, expires_at=issued.expires_at)


@router.post("/logout", status_code=204, summary="Revoke the token this request presents.")
def logout(who: Auth, context: Context) -> Response:
    context.accounts.revoke(who)
    return Response(status_code=204)
