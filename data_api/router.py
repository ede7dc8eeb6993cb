"""HTTP endpoints of the `data_api` package; mounted by `app.main.create_app`.

Empty until its issue adds the endpoints: no placeholder routes.
"""

from fastapi import APIRouter

router = APIRouter(tags=["documents"])
