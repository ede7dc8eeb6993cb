"""HTTP endpoints of the `auth` package; mounted by `app.main.create_app`.

Empty until its issue adds the endpoints: no placeholder routes.
"""

from fastapi import APIRouter

router = APIRouter(tags=["auth"])
