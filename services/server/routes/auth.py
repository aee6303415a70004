"""/auth: accounts and tokens."""

from fastapi import APIRouter, Response

from services.server.http_errors import ERRORS
from services.server.routes.deps import Api, Auth
from services.server.schemas import Credentials, TokenOut, UserOut

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERRORS)


@router.post("/register", status_code=201, response_model=UserOut, summary="Create an account.")
def register(body: Credentials, api: Api) -> UserOut:
    return api.accounts.register(body)


@router.post(
    "/login", response_model=TokenOut, summary="Exchange email and password for a bearer token."
)
def login(body: Credentials, api: Api) -> TokenOut:
    return api.accounts.login(body)


@router.post("/logout", status_code=204, summary="Revoke the token this request presents.")
def logout(who: Auth, api: Api) -> Response:
    api.accounts.logout(who)
    return Response(status_code=204)
