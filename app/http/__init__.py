"""The HTTP layer (being assembled)."""

from app.http.handlers import error_response, install_error_handlers

__all__ = ["error_response", "install_error_handlers"]
