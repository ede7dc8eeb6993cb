"""Routes mounted only in tests, to reach paths no production endpoint has yet:
an unexpected exception, a body model, and a request that touches the database.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, Field

from app.http import ControlDbDep


class EchoBody(BaseModel):
    name: str = Field(min_length=1)
    count: int


def install_test_routes(app: FastAPI) -> None:
    @app.get("/_test/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("secret driver detail: mongodb://user:hunter2@db")

    @app.post("/_test/echo")
    async def echo(body: EchoBody) -> dict[str, object]:
        return {"success": True, "data": body.model_dump()}

    @app.post("/_test/notes")
    async def write_note(body: EchoBody, control: ControlDbDep) -> dict[str, object]:
        await control["notes"].insert_one(body.model_dump())
        return {"success": True}

    @app.get("/_test/notes")
    async def count_notes(control: ControlDbDep) -> dict[str, object]:
        return {"success": True, "count": await control["notes"].count_documents({})}
