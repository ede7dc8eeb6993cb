"""Request and answer models of the auth endpoints (seed 004's shapes, auth.md's rules)."""

from __future__ import annotations

from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.clock import UtcDatetime


def normalize_email(value: str) -> str:
    """Trimmed, validated, lower-cased: one spelling per address."""
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return checked.normalized.lower()


def loose_email(value: str) -> str:
    """For login/forgot/resend: normalized when valid, else compared as typed (no 422 leak)."""
    try:
        return normalize_email(value)
    except ValueError:
        return value.strip().lower()


Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(normalize_email)]
LooseEmail = Annotated[str, StringConstraints(max_length=320), AfterValidator(loose_email)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(StrictModel):
    email: Email
    firstName: Name
    lastName: Name
    password: Password

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "email": "developer@example.com",
                "firstName": "Alex",
                "lastName": "Dev",
                "password": "a-strong-and-secure-password",
            }
        },
    )


class LoginRequest(StrictModel):
    email: LooseEmail
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "email": "developer@example.com",
                "password": "a-strong-and-secure-password",
            }
        },
    )


class EmailRequest(StrictModel):
    email: LooseEmail


class TokenRequest(StrictModel):
    token: Token


class RefreshRequest(StrictModel):
    refresh: Token


class ResetPasswordRequest(StrictModel):
    token: Token
    password: Password


class ChangePasswordRequest(StrictModel):
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    new_password: Password


class UpdateMeRequest(StrictModel):
    firstName: Name | None = None
    lastName: Name | None = None


class CreateApiKeyRequest(StrictModel):
    name: Name
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"name": "billing-backend", "expires_in_days": 90}},
    )


# ---------------------------------------------------------------- answers


class MessageAnswer(BaseModel):
    success: Literal[True] = True
    message: str

    model_config = ConfigDict(
        json_schema_extra={"example": {"success": True, "message": "Email verified."}}
    )


class TokenPair(BaseModel):
    success: Literal[True] = True
    refresh: str
    access: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth token type)
    expires_in: int = Field(description="Lifetime of the access token in seconds.")

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "refresh": "eyJ0eXAiOiJKV1QiLCJhbGciOiJI...",
                "access": "eyJ0eXAiOiJKV1QiLCJhbGciOiJI...",
                "token_type": "bearer",
                "expires_in": 900,
            }
        }
    )


class UserOut(BaseModel):
    id: str
    email: str
    firstName: str
    lastName: str
    is_verified: bool
    #: `admin`: a platform administrator (sees and administers every dataset).
    role: Literal["user", "admin"] = "user"
    created_at: UtcDatetime


class UserAnswer(BaseModel):
    success: Literal[True] = True
    data: UserOut

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "data": {
                    "id": "60c72b2f9b1d8b1a2d3e4567",
                    "email": "developer@example.com",
                    "firstName": "Alex",
                    "lastName": "Dev",
                    "is_verified": True,
                    "role": "user",
                    "created_at": "2026-11-24T10:00:00Z",
                },
            }
        }
    )


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    created_at: UtcDatetime
    expires_at: UtcDatetime | None
    last_used_at: UtcDatetime | None = None


class ApiKeyCreatedOut(BaseModel):
    id: str
    name: str
    prefix: str
    key: str = Field(description="The whole key. Shown here once and never again.")
    created_at: UtcDatetime
    expires_at: UtcDatetime | None


class ApiKeyCreatedAnswer(BaseModel):
    success: Literal[True] = True
    data: ApiKeyCreatedOut

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "data": {
                    "id": "60c72b2f9b1d8b1a2d3e4568",
                    "name": "billing-backend",
                    "prefix": "Ab3dE9xY",
                    "key": "qk_Ab3dE9xY_" + "x" * 43,
                    "created_at": "2026-11-24T10:00:00Z",
                    "expires_at": "2027-02-22T10:00:00Z",
                },
            }
        }
    )


class ApiKeyListAnswer(BaseModel):
    success: Literal[True] = True
    data: list[ApiKeyOut]

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "data": [
                    {
                        "id": "60c72b2f9b1d8b1a2d3e4568",
                        "name": "billing-backend",
                        "prefix": "Ab3dE9xY",
                        "created_at": "2026-11-24T10:00:00Z",
                        "expires_at": None,
                        "last_used_at": "2026-11-24T11:00:00Z",
                    }
                ],
            }
        }
    )
