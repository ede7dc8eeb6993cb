"""The declared operations, one module per area (see `quarry_client.endpoints`)."""

# Each import registers its module's routes.
from quarry_client.routes import auth, datasets, documents, entries, management, rows  # noqa: F401
