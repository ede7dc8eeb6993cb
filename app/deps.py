"""Shared FastAPI dependencies as `Annotated` aliases.

Chained client → repository → service: feature packages build their own
repository and service dependencies on top of these. `Caller` (user or API key)
joins them with the auth issue.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pymongo.asynchronous.database import AsyncDatabase

from app.database import Database, Document
from app.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_control_db(database: Annotated[Database, Depends(get_database)]) -> AsyncDatabase[Document]:
    return database.control


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
ControlDbDep = Annotated[AsyncDatabase[Document], Depends(get_control_db)]
