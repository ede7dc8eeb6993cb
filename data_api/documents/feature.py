"""What the documents feature contributes to the app: document CRUD."""

from app.wiring import Feature
from data_api.documents.router import router

DOCUMENTS = Feature(
    name="documents",
    routers=(router,),
    tags=({"name": "documents", "description": "Document CRUD."},),
)
