"""HTTP endpoints of accounts, tokens and API keys (auth.md); thin: parse, call
the service, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request

from app.audit import annotate, email_fingerprint
from app.http import BearerCallerDep, ControlDbDep, error_responses
from app.mail import MailQueue
from app.wiring import request_state
from auth.schemas import (
    ApiKeyCreatedAnswer,
    ApiKeyListAnswer,
    ChangePasswordRequest,
    CreateApiKeyRequest,
    EmailRequest,
    LoginRequest,
    MessageAnswer,
    RefreshRequest,
    RegisterRequest,
    ResetPasswordRequest,
    TokenPair,
    TokenRequest,
    UpdateMeRequest,
    UserAnswer,
)
from auth.service import AuthService, AuthState

router = APIRouter(tags=["auth"])
keys_router = APIRouter(tags=["API keys"])


def get_auth_state(request: Request) -> AuthState:
    return request_state(request).get(AuthState)


def get_auth_service(
    control: ControlDbDep,
    state: Annotated[AuthState, Depends(get_auth_state)],
    background: BackgroundTasks,
) -> AuthService:
    return AuthService(db=control, state=state, mail=MailQueue(state.mailer, background))


ServiceDep = Annotated[AuthService, Depends(get_auth_service)]

REGISTERED = "User registered successfully. Please check your email to verify your account."
VERIFIED = "Email verified."
ACCEPTED = "If the address belongs to an account that needs it, a mail is on its way."


@router.post(
    "/core/register",
    status_code=201,
    response_model=MessageAnswer,
    responses=error_responses(400, 413, 422, 429),
)
async def register(body: RegisterRequest, request: Request, service: ServiceDep) -> MessageAnswer:
    """Create an account; a verification link is mailed."""
    annotate(request, resource_type="user", details={"email_sha256": email_fingerprint(body.email)})
    await service.register(
        email=body.email,
        first_name=body.firstName,
        last_name=body.lastName,
        password=body.password,
        address=client_address(request),
    )
    return MessageAnswer(message=REGISTERED)


@router.get("/core/verify", response_model=MessageAnswer, responses=error_responses(400, 422))
async def verify_by_link(
    token: Annotated[str, Query(min_length=1, max_length=4096)],
    request: Request,
    service: ServiceDep,
) -> MessageAnswer:
    """Verify an email address (the link in the mail)."""
    annotate(request, resource_type="user")  # a state change behind a GET: audited too
    await service.verify_email(token=token)
    return MessageAnswer(message=VERIFIED)


@router.post("/core/verify", response_model=MessageAnswer, responses=error_responses(400, 422))
async def verify(body: TokenRequest, service: ServiceDep) -> MessageAnswer:
    """Verify an email address with the token from the mail."""
    await service.verify_email(token=body.token)
    return MessageAnswer(message=VERIFIED)


@router.post(
    "/core/resend-verification",
    status_code=202,
    response_model=MessageAnswer,
    responses=error_responses(400, 422),
)
async def resend_verification(body: EmailRequest, service: ServiceDep) -> MessageAnswer:
    """Mail a new verification link (same answer whatever the account state)."""
    await service.resend_verification(email=body.email)
    return MessageAnswer(message=ACCEPTED)


@router.post(
    "/core/login", response_model=TokenPair, responses=error_responses(400, 401, 403, 422, 429)
)
async def login(body: LoginRequest, request: Request, service: ServiceDep) -> TokenPair:
    """Exchange email and password for an access and a refresh token."""
    annotate(request, resource_type="user", details={"email_sha256": email_fingerprint(body.email)})
    tokens = await service.login(
        email=body.email, password=body.password, address=client_address(request)
    )
    user_id = service.caller_from_access_token(tokens["access"]).user_id
    annotate(request, actor_user_id=user_id, resource_id=user_id)
    return TokenPair(**tokens)


def client_address(request: Request) -> str:
    """The caller's address (behind a proxy, uvicorn's `proxy_headers` has set it
    from X-Forwarded-For for the proxies it trusts)."""
    return request.client.host if request.client else "unknown"


@router.post(
    "/core/token/refresh", response_model=TokenPair, responses=error_responses(400, 401, 422)
)
async def refresh(body: RefreshRequest, service: ServiceDep) -> TokenPair:
    """Rotate a refresh token into a new pair; reuse revokes the session."""
    return TokenPair(**await service.refresh(refresh_token=body.refresh))


@router.post("/core/logout", response_model=MessageAnswer, responses=error_responses(400, 401, 422))
async def logout(body: RefreshRequest, service: ServiceDep) -> MessageAnswer:
    """End the session of this refresh token."""
    await service.logout(refresh_token=body.refresh)
    return MessageAnswer(message="Logged out.")


@router.post(
    "/core/logout-all",
    response_model=MessageAnswer,
    responses=error_responses(401, 403),
)
async def logout_all(caller: BearerCallerDep, service: ServiceDep) -> MessageAnswer:
    """End every session of the current user."""
    await service.logout_all(user_id=caller.user_id)
    return MessageAnswer(message="Logged out everywhere.")


@router.post(
    "/core/password/forgot",
    status_code=202,
    response_model=MessageAnswer,
    responses=error_responses(400, 422),
)
async def forgot_password(body: EmailRequest, service: ServiceDep) -> MessageAnswer:
    """Mail a password-reset token (same answer whatever the account state)."""
    await service.forgot_password(email=body.email)
    return MessageAnswer(message=ACCEPTED)


@router.post(
    "/core/password/reset", response_model=MessageAnswer, responses=error_responses(400, 422)
)
async def reset_password(
    body: ResetPasswordRequest, request: Request, service: ServiceDep
) -> MessageAnswer:
    """Set a new password with a reset token; every session ends."""
    annotate(request, resource_type="user")
    await service.reset_password(token=body.token, password=body.password)
    return MessageAnswer(message="Password changed; log in with the new password.")


@router.post(
    "/core/password/change",
    response_model=MessageAnswer,
    responses=error_responses(400, 401, 403, 422),
)
async def change_password(
    body: ChangePasswordRequest, request: Request, caller: BearerCallerDep, service: ServiceDep
) -> MessageAnswer:
    """Change the password; other sessions end, this one stays."""
    annotate(request, resource_type="user", resource_id=caller.user_id)
    await service.change_password(
        caller=caller, current_password=body.current_password, new_password=body.new_password
    )
    return MessageAnswer(message="Password changed.")


@router.get(
    "/core/me",
    response_model=UserAnswer,
    responses=error_responses(401, 403),
)
async def me(caller: BearerCallerDep, service: ServiceDep) -> UserAnswer:
    """The current user's profile."""
    return UserAnswer(data=await service.me(caller=caller))  # type: ignore[arg-type]


@router.patch(
    "/core/me",
    response_model=UserAnswer,
    responses=error_responses(400, 401, 403, 422),
)
async def update_me(
    body: UpdateMeRequest, caller: BearerCallerDep, service: ServiceDep
) -> UserAnswer:
    """Change the current user's first or last name."""
    data = await service.update_me(
        caller=caller, first_name=body.firstName, last_name=body.lastName
    )
    return UserAnswer(data=data)  # type: ignore[arg-type]


@keys_router.post(
    "/api/api_keys",
    status_code=201,
    response_model=ApiKeyCreatedAnswer,
    responses=error_responses(400, 401, 403, 409, 422),
)
async def create_api_key(
    body: CreateApiKeyRequest, request: Request, caller: BearerCallerDep, service: ServiceDep
) -> ApiKeyCreatedAnswer:
    """Create an API key; the key is in this answer and never shown again."""
    annotate(request, resource_type="api_key")
    data = await service.create_api_key(
        caller=caller, name=body.name, expires_in_days=body.expires_in_days
    )
    annotate(request, resource_id=data["id"], details={"key_prefix": data["prefix"]})
    return ApiKeyCreatedAnswer(data=data)  # type: ignore[arg-type]


@keys_router.get(
    "/api/api_keys",
    response_model=ApiKeyListAnswer,
    responses=error_responses(401, 403),
)
async def list_api_keys(caller: BearerCallerDep, service: ServiceDep) -> ApiKeyListAnswer:
    """List the current user's API keys (without the keys themselves)."""
    return ApiKeyListAnswer(data=await service.list_api_keys(caller=caller))  # type: ignore[arg-type]


@keys_router.delete(
    "/api/api_keys/{key_id}",
    response_model=MessageAnswer,
    responses=error_responses(401, 403, 404, 422),
)
async def delete_api_key(
    key_id: str, request: Request, caller: BearerCallerDep, service: ServiceDep
) -> MessageAnswer:
    """Revoke an API key; it stops working at once."""
    annotate(request, resource_type="api_key")
    await service.delete_api_key(caller=caller, key_id=key_id)
    return MessageAnswer(message="API key revoked.")
