"""Accounts, email verification, JWT access/refresh pairs, password reset and API keys.

Implements `spec/auth.md` (issue #3): `router.py` (HTTP), `service.py` (rules),
`repository.py` (MongoDB), `schemas.py`, `errors.py`. Nothing here yet but the
router the app mounts, so that the feature lands without touching `app/`.
"""
