"""Dataset expiry: the sweeper that deletes expired datasets, finishes deletions cut
short, drops expired shares and warns owners before their datasets go.

One worker at a time runs a sweep (a lease in the catalogue, `leases`, renewed
each round, taken over when its holder stops renewing). A dataset answers 404
from the second it expires (`access.dataset_is_live`); the sweep only removes
what is already invisible, exactly as `DELETE` does (`DatasetService.delete`
path: mark `deleting`, remove the data, the catalogue row last), and writes an
audit record for it. Any dataset found `deleting` is finished (idempotent), so a
deletion killed part-way — by a crash of the server or of the engine — is
completed by the next sweep and is never half-visible meanwhile.

Warnings (seed 003): from 10 days before expiry a warning log line per dataset,
daily, then hourly on the final day; and two mails to the owner, at 10 days and
at 1 day. Each is recorded on the dataset (`warned`) before it is sent, so a
restart never mails twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import PyMongoError

from app.audit import AuditUnavailable
from app.clock import iso_z, utc_now
from app.db import Document
from app.mail import Mail, Mailer
from app.users import find_user
from data_api.datasets.service import DatasetService

logger = logging.getLogger("quarry.datasets")

LEASE = "dataset-expiry"
WARN_AHEAD = timedelta(days=10)
FINAL_DAY = timedelta(days=1)


class ExpirySweeper:
    def __init__(self, *, service: DatasetService, mailer: Mailer | None, interval: float) -> None:
        self.service = service
        self.catalogue = service.catalogue
        self.mailer = mailer
        self.interval = interval
        self.holder = uuid.uuid4().hex

    async def __call__(self) -> None:
        try:
            await self.sweep()
        except (PyMongoError, AuditUnavailable) as exc:
            logger.warning("dataset sweep postponed: %s", type(exc).__name__)

    async def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """One round, if this worker holds the lease; counts of what it did."""
        now = now or utc_now()
        lease_until = now + timedelta(seconds=max(3 * self.interval, 30))
        done = {"expired": 0, "finished": 0, "shares": 0, "warned": 0}
        if not await self.catalogue.take_lease(
            name=LEASE, holder=self.holder, now=now, until=lease_until
        ):
            return done
        for dataset in await self.catalogue.datasets_where(query={"state": "deleting"}):
            await self.service.finish_deletion(dataset)
            done["finished"] += 1
        horizon = now + WARN_AHEAD
        for dataset in await self.catalogue.datasets_where(
            query={"state": "live", "expires_at": {"$lte": horizon}}
        ):
            if dataset["expires_at"] <= now:
                await self._expire(dataset, now)
                done["expired"] += 1
            elif await self._warn(dataset, now):
                done["warned"] += 1
        done["shares"] = await self.catalogue.delete_expired_shares(now=now)
        if done["expired"] or done["finished"]:
            logger.info("dataset sweep: %s", done)
        return done

    async def _expire(self, dataset: Document, now: datetime) -> None:
        """Audit, mark `deleting` (invisible from then on), delete. The record comes
        first: a sweep cut short after it finishes the deletion without a second
        one, and one cut short before it audits on the next round."""
        await self.service.audit_event(
            action="datasets.expire",
            resource_type="dataset",
            resource_id=str(dataset["_id"]),
            dataset_id=dataset["_id"],
            actor_user_id=None,
            status=204,
            details={
                "expired_at": iso_z(dataset["expires_at"]),
                "owner_id": str(dataset["owner_id"]),
            },
        )
        if not await self.catalogue.update_dataset(
            dataset_id=dataset["_id"],
            update={"$set": {"state": "deleting", "deleting_since": now}},
        ):
            return
        await self.service.finish_deletion(dataset)
        logger.warning(
            "dataset %s of owner %s expired at %s and was deleted",
            dataset["_id"],
            dataset["owner_id"],
            iso_z(dataset["expires_at"]),
        )

    async def _warn(self, dataset: Document, now: datetime) -> bool:
        left = dataset["expires_at"] - now
        warned: dict[str, Any] = dict(dataset.get("warned") or {})
        changes: dict[str, Any] = {}
        every = timedelta(hours=1) if left <= FINAL_DAY else timedelta(days=1)
        last_log = warned.get("log_at")
        if last_log is None or now - last_log >= every:
            changes["warned.log_at"] = now
            logger.warning(
                "dataset %s (%s) expires at %s, in %.1f hours",
                dataset["_id"],
                dataset["name"],
                iso_z(dataset["expires_at"]),
                left.total_seconds() / 3600,
            )
        mails = []
        if "mail_10d_at" not in warned:
            changes["warned.mail_10d_at"] = now
            mails.append(left)
        if left <= FINAL_DAY and "mail_1d_at" not in warned:
            changes["warned.mail_1d_at"] = now
            if not mails:
                mails.append(left)
        if not changes:
            return False
        await self.catalogue.update_dataset(dataset_id=dataset["_id"], update={"$set": changes})
        for remaining in mails:
            await self._mail_owner(dataset, remaining)
        return True

    async def _mail_owner(self, dataset: Document, left: timedelta) -> None:
        if self.mailer is None:
            return
        owner = await find_user(control=self.catalogue.control, user_id=dataset["owner_id"])
        if owner is None:
            return
        days = max(1, round(left.total_seconds() / 86400))
        await self.mailer.send(
            Mail(
                to=owner["email"],
                subject=f"Your dataset “{dataset['name']}” expires in {days} day(s)",
                template="dataset_expiring",
                context={
                    "name": dataset["name"],
                    "dataset_id": str(dataset["_id"]),
                    "expires_at": iso_z(dataset["expires_at"]),
                    "days": days,
                },
            )
        )
