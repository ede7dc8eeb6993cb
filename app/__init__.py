"""Quarry's shared core: app factory, settings, database client, engine, errors, CLI."""

__version__ = "0.1.0"
