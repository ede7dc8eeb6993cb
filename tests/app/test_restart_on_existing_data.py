"""A server started again on existing data confirms every index it needs: FerretDB
drops the connection when one `createIndexes` names several existing indexes, which
left auth, management and the dataset catalogue unready (503) after any restart."""

from __future__ import annotations

import uuid
from typing import Any

from app.wiring import state_of
from auth.service import AuthState
from data_api.datasets.repository import Catalogue
from tests.fixtures.accounts import register_account


async def test_a_second_start_on_the_same_data_has_every_index_ready(
    make_client: Any, inbox: Any
) -> None:
    control_db = f"quarry_test_restart_{uuid.uuid4().hex[:8]}"
    async with make_client(control_db=control_db) as (app, http):
        owner = await register_account(http, inbox)
        created = await http.post("/api/v1/datasets", json={"name": "kept"}, headers=owner.bearer)
        assert created.status_code == 201, created.text
    async with make_client(control_db=control_db) as (app, http):
        assert state_of(app).get(AuthState).indexes_ready
        assert "management" in state_of(app).database.indexes_ready
        assert state_of(app).get(Catalogue).ready
        # Writes whose safety rests on those indexes answer, not 503.
        again = await register_account(http, inbox)
        shared = await http.post(
            f"/api/v1/datasets/{created.json()['data']['id']}/shares",
            json={"email": again.email},
            headers=owner.bearer,
        )
        assert shared.status_code == 201, shared.text
        await state_of(app).database.client.drop_database(control_db)
