"""What the auth feature contributes to the app: accounts and API keys."""

from app.wiring import Feature
from auth.commands import register_commands
from auth.lifecycle import lifecycle
from auth.router import keys_router, router

AUTH = Feature(
    name="auth",
    routers=(router, keys_router),
    tags=(
        {"name": "auth", "description": "Accounts, email verification, tokens."},
        {"name": "API keys", "description": "Long-lived keys for backends (Bearer only)."},
    ),
    lifecycle=lifecycle,
    commands=register_commands,
)
