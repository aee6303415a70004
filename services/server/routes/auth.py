"""/auth: accounts and tokens."""

from fastapi import APIRouter, Request, Response

from services.server.http_errors import AUTH_ERRORS, ERRORS
from services.server.routes.deps import Api, Auth
from services.server.schemas import Credentials, TokenOut, UserOut

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERRORS)


def client_address(request: Request) -> str | None:
    """The caller's address (uvicorn takes it from X-Forwarded-For of a trusted proxy)."""
    return request.client.host if request.client else None


@router.post(
    "/register",
    status_code=201,
    response_model=UserOut,
    responses=AUTH_ERRORS,
    summary="Create an account (as CHRONOVERSE_REGISTRATION allows).",
)
def register(body: Credentials, request: Request, api: Api) -> UserOut:
    return api.accounts.register(body, client=client_address(request))


@router.post(
    "/login",
    response_model=TokenOut,
    responses=AUTH_ERRORS,
    summary="Exchange email and password for a bearer token.",
)
def login(body: Credentials, request: Request, api: Api) -> TokenOut:
    return api.accounts.login(body, client=client_address(request))


@router.post("/logout", status_code=204, summary="Revoke the token this request presents.")
def logout(who: Auth, api: Api) -> Response:
    api.accounts.logout(who)
    return Response(status_code=204)
