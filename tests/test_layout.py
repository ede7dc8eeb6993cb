"""The layout's dependency rules, checked on the source (an AST scan), so the
layout cannot rot (docs/architecture.md):

- the core (`app/`) never imports a feature (`auth`, `management`, `data_api`),
  except the composition root (`app.main`, `app.routers`, `app.features`), which
  the command line may import when it builds its parser;
- each core layer imports only the layers below it (`LAYERS`);
- a module inside a core package imports its siblings, never its own package's
  root (which re-exports them: that is how import cycles start);
- features import the core only through a package's root or a single-file
  module (`from app.db import Database`, never `app.db.page_query`), never the
  composition root, the embedded engine or the driver's client classes: every
  database operation goes through `app.db`'s handles;
- the composition root starts every feature's lifecycle exactly once.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FEATURE_ROOTS = ("auth", "management", "data_api")
COMPOSITION_ROOT = {"app.main", "app.routers", "app.features"}
BASE = {"app", "app.settings", "app.errors", "app.clock"}
#: What each core layer may import from `app`, besides itself and `BASE`.
LAYERS: dict[str, set[str]] = {
    "app.settings": set(),
    "app.errors": set(),
    "app.clock": set(),
    "app.kit": set(),
    "app.background": set(),
    "app.logs": {"app.kit"},
    "app.db": {"app.kit"},
    "app.schema": {"app.kit"},
    "app.users": {"app.db"},
    "app.mail": {"app.kit"},
    "app.wiring": {"app.db", "app.background"},
    "app.engine": {"app.db", "app.kit", "app.wiring"},
    "app.limits": {"app.db", "app.kit", "app.wiring"},
    "app.http": {"app.limits", "app.db", "app.kit", "app.wiring"},
    "app.audit": {"app.http", "app.limits", "app.db", "app.kit", "app.wiring", "app.users"},
    "app.cli": {
        "app.audit",
        "app.http",
        "app.limits",
        "app.db",
        "app.kit",
        "app.wiring",
        "app.engine",
        *COMPOSITION_ROOT,
    },
    "app.console": {"app.cli"},
}
#: Single-file core modules and package roots: the core's public surfaces.
PUBLIC = BASE | {
    "app.kit",
    "app.background",
    "app.logs",
    "app.db",
    "app.schema",
    "app.users",
    "app.mail",
    "app.wiring",
    "app.limits",
    "app.http",
    "app.audit",
    "app.cli",
}
#: Driver modules and classes a feature must not touch: it goes through `app.db`'s
#: handles (the driver's errors, results and constants it may use).
DRIVER_INTERNALS = (
    "pymongo.asynchronous",
    "pymongo.synchronous",
    "pymongo.mongo_client",
    "pymongo.database",
    "pymongo.collection",
    "pymongo.cursor",
    "motor",
)
DRIVER_CLASSES = {
    "MongoClient",
    "AsyncMongoClient",
    "Database",
    "AsyncDatabase",
    "Collection",
    "AsyncCollection",
}


def module_name(path: Path, tree: Path = REPO) -> str:
    parts = list(path.relative_to(tree).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str, tree: Path = REPO) -> bool:
    path = tree.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported(path: Path, tree: Path = REPO) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in `path`, lazy ones included; `from app
    import audit` counts as importing `app.audit` (and only that); `from pymongo
    import MongoClient` as importing `pymongo.MongoClient`; a relative import as
    `.` (refused: every import names its module in full)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            yield node.lineno, "."
        elif isinstance(node, ast.ImportFrom) and node.module == "pymongo":
            for alias in node.names:
                yield node.lineno, f"pymongo.{alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            submodules = [name for name in names if is_module(name, tree)]
            if len(submodules) < len(names):
                yield node.lineno, node.module
            for name in submodules:
                yield node.lineno, name


def sources(*roots: str, tree: Path = REPO) -> list[Path]:
    return sorted(p for root in roots for p in (tree / root).rglob("*.py"))


def layer_of(module: str) -> str:
    """The core layer (`app.db`, `app.settings`, ...) a module belongs to."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def is_feature(module: str) -> bool:
    return module.split(".")[0] in FEATURE_ROOTS


def is_core(module: str) -> bool:
    return module == "app" or module.startswith("app.")


def is_driver_internal(module: str) -> bool:
    parts = module.split(".")
    return module.startswith(DRIVER_INTERNALS) or (
        parts[0] == "pymongo" and parts[-1] in DRIVER_CLASSES
    )


def reaches_around(path: Path) -> Iterator[tuple[int, str]]:
    """Attribute paths a feature must not take: a database's driver client
    (`database.client[...]`) and the app's loose state (`app.state.x`,
    `request.app.state`, `scope["app"].state`): features use `app.db`'s handles and
    `app.wiring`'s typed state."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        owner = ast.unparse(node.value)
        if node.attr == "client" and owner.split(".")[-1] == "database":
            yield node.lineno, f"{owner}.client"
        if node.attr == "state" and (
            owner == "app" or owner.endswith(".app") or owner.endswith("['app']")
        ):
            yield node.lineno, f"{owner}.state"


def core_problems(tree: Path = REPO) -> list[str]:
    problems = []
    for path in sources("app", tree=tree):
        module = module_name(path, tree)
        layer = layer_of(module)
        for line, target in imported(path, tree):
            where = f"{path.relative_to(tree)}:{line} imports {target}"
            if module in COMPOSITION_ROOT:
                continue
            if is_feature(target):
                problems.append(f"{where}: the core never imports a feature")
                continue
            if target == ".":
                problems.append(f"{path.relative_to(tree)}:{line}: a relative import")
                continue
            if not is_core(target) or target in BASE:
                continue
            target_layer = layer_of(target)
            if target_layer == layer:
                if target == layer and module != layer and is_module(f"{layer}.__init__", tree):
                    problems.append(f"{where}: import the sibling module, not the package root")
                continue
            if layer not in LAYERS:
                problems.append(f"{where}: {layer} has no place in LAYERS")
            elif target_layer not in LAYERS[layer]:
                problems.append(f"{where}: {layer} may not import {target_layer}")
    return problems


def feature_problems(tree: Path = REPO) -> list[str]:
    problems = []
    for path in sources(*FEATURE_ROOTS, tree=tree):
        for line, target in imported(path, tree):
            where = f"{path.relative_to(tree)}:{line} imports {target}"
            if target == ".":
                problems.append(f"{path.relative_to(tree)}:{line}: a relative import")
            elif is_driver_internal(target):
                problems.append(f"{where}: features use app.db's handles, not the driver")
            elif is_core(target) and target not in PUBLIC:
                problems.append(f"{where}: features import a package root or flat module")
        for line, reached in reaches_around(path):
            problems.append(
                f"{path.relative_to(tree)}:{line} reaches {reached}: use app.db/app.wiring"
            )
    return problems


def test_the_core_imports_only_the_layers_below_it_and_never_a_feature() -> None:
    assert core_problems() == []


def test_features_import_only_public_surfaces_of_the_core() -> None:
    assert feature_problems() == []


def test_every_core_module_has_a_layer() -> None:
    layers = {layer_of(module_name(p)) for p in sources("app")} - COMPOSITION_ROOT
    assert layers - set(LAYERS) - BASE == set()


def test_the_scan_reports_the_imports_it_must_refuse(tmp_path: Path) -> None:
    """The rules can fail: a tree written the wrong way is reported line by line."""
    for package in ("app", "app/db", "app/http", "auth"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text('"""A package."""\n')
    (tmp_path / "app" / "db" / "probe.py").write_text(
        "from app.http import CallerDep\nfrom auth import x\nfrom app.db import X\n"
    )
    (tmp_path / "auth" / "probe.py").write_text(
        "from app.db.probe import Y\nfrom pymongo.asynchronous.collection import C\n"
        "from pymongo import AsyncMongoClient\nfrom . import sibling\nimport appdirs\n"
        "rows = self.database.client['x']\ncatalogue = request.app.state.catalogue\n"
    )
    assert core_problems(tmp_path) == [
        "app/db/probe.py:1 imports app.http: app.db may not import app.http",
        "app/db/probe.py:2 imports auth: the core never imports a feature",
        "app/db/probe.py:3 imports app.db: import the sibling module, not the package root",
    ]
    assert feature_problems(tmp_path) == [
        "auth/probe.py:1 imports app.db.probe: features import a package root or flat module",
        "auth/probe.py:2 imports pymongo.asynchronous.collection: features use app.db's "
        "handles, not the driver",
        "auth/probe.py:3 imports pymongo.AsyncMongoClient: features use app.db's handles, "
        "not the driver",
        "auth/probe.py:4: a relative import",
        "auth/probe.py:6 reaches self.database.client: use app.db/app.wiring",
        "auth/probe.py:7 reaches request.app.state: use app.db/app.wiring",
    ]


def test_every_feature_lifecycle_runs_once() -> None:
    from app.features import FEATURES
    from app.main import LIFECYCLES

    for feature in FEATURES:
        if feature.lifecycle is not None:
            assert LIFECYCLES.count(feature.lifecycle) == 1, feature.name


@pytest.mark.parametrize("root", ["app", *FEATURE_ROOTS])
def test_every_package_says_what_it_holds(root: str) -> None:
    """One docstring per package naming its public surface."""
    for init in (REPO / root).rglob("__init__.py"):
        if init.parent.name == "templates":
            continue
        assert ast.get_docstring(ast.parse(init.read_text())), init.relative_to(REPO)


def test_importing_the_features_loads_neither_the_engine_nor_the_commands() -> None:
    """A feature's command registers through `app.cli`'s light surface; the engine
    and the server's commands are imported only when a command runs."""
    script = (
        "import sys\n"
        "from app.features import FEATURES\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('app.engine', 'app.cli.')))\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "app.cli.support"


def test_the_console_hands_every_server_command_to_the_server() -> None:
    """`quarry` decides by the first word whether a command is the server's or the
    client's, without importing the server: its list must be the parser's."""
    from quarry_client.cli import SERVER_COMMANDS as CLIENT_SIDE

    from app.cli import build_parser
    from app.console import SERVER_COMMANDS

    parser = build_parser()
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    assert set(commands.choices) == SERVER_COMMANDS == CLIENT_SIDE
