"""Checking the chain (`quarry audit verify`, `AuditLog.verify`): records walked in
`seq` order from the anchor; the first one edited, missing or out of order is
named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.audit.records import Link, record_hash

# ---------------------------------------------------------------- verifying


@dataclass
class ChainReport:
    ok: bool
    checked: int
    anchor_seq: int
    #: What is wrong with the first broken record: "edited", "missing" or "reordered".
    problem: str | None = None
    broken_seq: int | None = None
    broken_id: str | None = None
    message: str = ""


@dataclass
class ChainChecker:
    """Walks records in seq order from the anchor and stops at the first break."""

    anchor: Link
    head_seq: int | None
    checked: int = 0
    failure: ChainReport | None = None
    _expected: int = field(init=False)
    _prev_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self._expected = self.anchor.seq + 1
        self._prev_hash = self.anchor.hash

    def _fail(self, problem: str, seq: int, record_id: Any, message: str) -> bool:
        self.failure = ChainReport(
            ok=False,
            checked=self.checked,
            anchor_seq=self.anchor.seq,
            problem=problem,
            broken_seq=seq,
            broken_id=None if record_id is None else str(record_id),
            message=message,
        )
        return False

    def check(self, record: Mapping[str, Any]) -> bool:
        """False (and a failure) at the first broken record."""
        seq, record_id = record.get("seq"), record.get("_id")
        if not isinstance(seq, int) or isinstance(seq, bool):
            message = f"record {record_id} has no integer seq ({seq!r}): it was edited"
            return self._fail("edited", self._expected, record_id, message)
        if seq > self._expected:
            missing = (
                f"seq {self._expected}"
                if seq == self._expected + 1
                else f"seqs {self._expected}..{seq - 1}"
            )
            return self._fail(
                "missing",
                self._expected,
                record_id,
                f"{missing} missing: the chain resumes at seq {seq} (id {record_id})",
            )
        if record_hash(record) != record.get("hash"):
            return self._fail(
                "edited",
                seq,
                record_id,
                f"record seq {seq} (id {record_id}) was edited: its content does not match "
                "its hash",
            )
        if record.get("prev_hash") != self._prev_hash:
            return self._fail(
                "reordered",
                seq,
                record_id,
                f"record seq {seq} (id {record_id}) does not follow seq {seq - 1}: its "
                "prev_hash differs from that record's hash (records were reordered or "
                "replaced)",
            )
        self.checked += 1
        self._expected = seq + 1
        self._prev_hash = str(record["hash"])
        return True

    def report(self) -> ChainReport:
        if self.failure is not None:
            return self.failure
        last = self._expected - 1
        if self.head_seq is not None and self.head_seq > last:
            self._fail(
                "missing",
                self._expected,
                None,
                f"seqs {self._expected}..{self.head_seq} missing at the end of the chain "
                f"(the head document says seq {self.head_seq} was written)",
            )
            assert self.failure is not None
            return self.failure
        return ChainReport(
            ok=True,
            checked=self.checked,
            anchor_seq=self.anchor.seq,
            message=f"audit chain intact: {self.checked} records from seq "
            f"{self.anchor.seq + 1} to {last}",
        )


def saved_head_seq(document: Mapping[str, Any] | None) -> int | None:
    if document is None or not isinstance(document.get("seq"), int):
        return None
    return int(document["seq"])
