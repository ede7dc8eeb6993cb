"""A server started again on existing data confirms every index it needs: FerretDB
drops the connection when one `createIndexes` names several existing indexes, which
left auth, management and the dataset catalogue unready (503) after any restart."""

from __future__ import annotations

import uuid
from typing import Any

from tests.accounts import register_account


async def test_a_second_start_on_the_same_data_has_every_index_ready(
    make_client: Any, inbox: Any
) -> None:
    control_db = f"quarry_test_restart_{uuid.uuid4().hex[:8]}"
    async with make_client(control_db=control_db) as (app, http):
        owner = await register_account(http, inbox)
        created = await http.post("/api/v1/datasets", json={"name": "kept"}, headers=owner.bearer)
        assert created.status_code == 201, created.text
    async with make_client(control_db=control_db) as (app, http):
        assert app.state.auth.indexes_ready
        assert "management" in app.state.database.indexes_ready
        assert app.state.datasets_catalogue.ready
        # Writes whose safety rests on those indexes answer, not 503.
        again = await register_account(http, inbox)
        shared = await http.post(
            f"/api/v1/datasets/{created.json()['data']['id']}/shares",
            json={"email": again.email},
            headers=owner.bearer,
        )
        assert shared.status_code == 201, shared.text
        await app.state.database.client.drop_database(control_db)
