"""The tamper-evident audit log: one hash-chained record per mutating request and
per auth, share, permission or expiry event.

- `records`: what a record holds and its hash (`record_hash`, `Link`, anchors).
- `chain`: `AuditLog`, which appends exactly once per position without
  transactions, sweeps by retention and reads pages.
- `verify`: walking the chain (`quarry audit verify`).
- `visibility`: who sees which records.
- `context` + `capture`: the middleware that records every mutating request,
  `annotate` for what only a handler knows, and the authenticator wrapper that
  remembers the caller.
- `lifecycle`, `router`: started with the app; `GET /api/v1/audit` and its export.

Features import from here only: `annotate`, `annotate_current`, `READ_ONLY_KEY`,
`AuditLog` (for non-request events), `AuditUnavailable`, `email_fingerprint`.
"""

from app.audit.capture import (
    MUTATING_METHODS,
    READ_ONLY_KEY,
    AuditMiddleware,
    annotate,
    annotate_current,
    audited_routes,
)
from app.audit.chain import AuditLog
from app.audit.lifecycle import AuditDep, lifecycle
from app.audit.records import AuditUnavailable, email_fingerprint, record_hash
from app.audit.verify import ChainReport
from app.audit.visibility import AuditFilter, AuditVisibility, Visibility, visibility_of

__all__ = [
    "MUTATING_METHODS",
    "READ_ONLY_KEY",
    "AuditDep",
    "AuditFilter",
    "AuditLog",
    "AuditMiddleware",
    "AuditUnavailable",
    "AuditVisibility",
    "ChainReport",
    "Visibility",
    "annotate",
    "annotate_current",
    "audited_routes",
    "email_fingerprint",
    "lifecycle",
    "record_hash",
    "visibility_of",
]
