"""What the search feature contributes to the app: keyword search over entries."""

from app.wiring import Feature
from data_api.search.commands import register_commands
from data_api.search.lifecycle import lifecycle
from data_api.search.router import router

SEARCH = Feature(
    name="search",
    routers=(router,),
    tags=({"name": "search", "description": "Keyword search over entries' text (BM25)."},),
    lifecycle=lifecycle,
    commands=register_commands,
)
