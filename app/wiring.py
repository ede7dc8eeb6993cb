"""The types the composition root (`app.main`, `app.routers`, `app.features`)
wires the app with.

- `AppState`: what the lifespan builds, typed: the settings, the database, the
  background tasks, and one object per type that a lifecycle provides
  (`state.provide(catalogue)`, then `state.get(Catalogue)` anywhere, typed as
  `Catalogue`). It lives on the app (`state_of(app)`), created with it, so that
  requests, middleware and tests reach it the same way whatever runs the app
  (Starlette's yielded lifespan state reaches requests only through a server
  that copies it into each request's scope, which in-process test transports do
  not).
- `Lifecycle`: an async context manager factory taking the state: it starts
  what it owns, provides it, registers its background tasks, and stops them on
  exit. `app.main` runs an ordered list of them with an `AsyncExitStack`, so
  whatever started is stopped in reverse order, also when a later start fails.
- `Feature`: what a feature package contributes — routers and their OpenAPI
  tags, its lifecycle, command-line sub-commands, request-body limits and
  middleware — so the core never imports a feature: features hand themselves
  to the composition root.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from starlette.applications import Starlette
from starlette.middleware import Middleware

from app.background import Background
from app.db import Database
from app.settings import Settings

T = TypeVar("T")


class NotStarted(RuntimeError):
    """Something was asked of the state before the lifespan provided it."""


class AppState:
    """The app's typed state (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.background = Background()
        self._database: Database | None = None
        self._parts: dict[type[Any], Any] = {}

    @property
    def database(self) -> Database:
        if self._database is None:
            raise NotStarted("the database is opened by the lifespan")
        return self._database

    @database.setter
    def database(self, database: Database) -> None:
        self._database = database

    def provide(self, value: T, *, as_: type[T] | None = None) -> T:
        """Keep `value` under its type (or `as_`, e.g. a Protocol it implements)."""
        self._parts[as_ or type(value)] = value
        return value

    def get(self, kind: type[T]) -> T:
        """The object provided as `kind`; `NotStarted` when none was."""
        try:
            found: T = self._parts[kind]
        except KeyError:
            raise NotStarted(
                f"no {kind.__name__} was provided (is its lifecycle running?)"
            ) from None
        return found

    def find(self, kind: type[T]) -> T | None:
        """The object provided as `kind`, or None."""
        found: T | None = self._parts.get(kind)
        return found

    def forget(self, kind: type[Any]) -> None:
        self._parts.pop(kind, None)


def state_of(app: Starlette) -> AppState:
    """The state of `app` (made by `app.main.create_app`)."""
    state: AppState = app.state.quarry
    return state


def request_state(request: Request) -> AppState:
    """The state of the app serving `request` (a dependency)."""
    return state_of(request.app)


#: Starts what it owns on entry, stops it on exit.
Lifecycle = Callable[[AppState], AbstractAsyncContextManager[object]]
#: Adds a feature's sub-commands to `quarry` (`commands.add_parser(...)` with
#: `set_defaults(handler=...)`, the handler taking the parsed arguments and
#: answering the exit code).
CommandRegistrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


@dataclass(frozen=True)
class Feature:
    """What one feature package contributes to the app (see the module docstring)."""

    name: str
    routers: Sequence[APIRouter] = ()
    #: OpenAPI tags (`{"name", "description"}`) of its routers, in display order.
    tags: Sequence[Mapping[str, str]] = ()
    lifecycle: Lifecycle | None = None
    commands: CommandRegistrar | None = None
    #: Paths whose request bodies have a limit of their own (over `QUARRY_MAX_BODY_BYTES`).
    body_limits: Callable[[Settings], Mapping[str, int]] | None = None
    #: Middleware it needs around every request (inside the audit and request context).
    middleware: Callable[[Settings], Sequence[Middleware]] | None = None
