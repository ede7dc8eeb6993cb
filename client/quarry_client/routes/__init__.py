"""The declared operations, one module per area (see `quarry_client.endpoints`)."""

from quarry_client.routes import auth  # noqa: F401 - each import registers its routes
