"""The `quarry` command line, run as a subprocess against a real server: login
and profiles, API keys from the environment, databases and schemas, import and
export, datasets, entries and rows — each with `--json` output that parses."""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import json_util
from quarry_client import Quarry
from quarry_client.cli.databases import convert_all
from quarry_client.models import ConversionAnswer

from tests.fixtures.cli import QUARRY, LineReader, cli_environment, json_error, run_json, run_quarry
from tests.fixtures.mailbox import Inbox
from tests.fixtures.quarry_server import verified_account


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def account(quarry_url: str, smtp_server: Inbox) -> tuple[str, str]:
    return verified_account(quarry_url, smtp_server)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


@pytest.fixture(scope="module")
def env(quarry_url: str, account: tuple[str, str], home: Path) -> dict[str, str]:
    """The environment of a user logged in with `quarry login` (profile `default`)."""
    email, password = account
    environment = cli_environment(home)
    done = run_quarry(
        {**environment, "QUARRY_PASSWORD": password},
        "login",
        "--url",
        quarry_url,
        "--email",
        email,
    )
    assert done.returncode == 0, done.stderr
    return environment


@pytest.fixture(scope="module")
def quarry(quarry_url: str, account: tuple[str, str]) -> Iterator[Quarry]:
    """The same account through the client, to check what the commands stored."""
    with Quarry(quarry_url) as client:
        client.auth.login(*account)
        yield client


def new_database(quarry: Quarry, *collections: str) -> dict[str, str]:
    """A database made through the client (quicker than a subprocess), by id and name."""
    created = quarry.databases.create(unique("db"), [{"name": name} for name in collections])
    return {"id": created.database.id, "name": created.database.name}


def database_with_items(quarry: Quarry, *, required: bool) -> dict[str, str]:
    """A database whose collection `items` has an int field `n`."""
    database = new_database(quarry)
    field = {"name": "n", "type": "int", "required": required}
    quarry.databases.create_collections(database["id"], [{"name": "items", "fields": [field]}])
    return database


def new_dataset(quarry: Quarry) -> dict[str, str]:
    created = quarry.datasets.create(unique("ds")).data
    return {"id": created.id, "name": created.name}


# ------------------------------------------------------------------ login and profiles


def login_profile(env: dict[str, str], url: str, account: tuple[str, str], profile: str) -> str:
    """`quarry login --profile PROFILE` with the password on stdin; the email."""
    email, password = account
    login = run_quarry(
        env, "login", "--url", url, "--email", email, "--profile", profile,
        "--password-stdin", stdin=password + "\n",
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    return email


def test_login_writes_a_private_profile_that_later_commands_use(
    env: dict[str, str], home: Path, account: tuple[str, str]
) -> None:
    directory = home / ".config" / "quarry"
    profile = directory / "default.json"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    tokens = json.loads(profile.read_text())
    me = run_quarry(env, "whoami", "--json")
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["email"] == account[0]
    listed = run_quarry(env, "profiles", "--json")
    assert [p["name"] for p in json.loads(listed.stdout) if p["active"]] == ["default"]
    for secret in (tokens["access"], tokens["refresh"], account[1]):
        assert secret not in me.stdout + me.stderr + listed.stdout + listed.stderr


def test_logout_revokes_and_removes_only_that_profile(
    env: dict[str, str], home: Path, quarry_url: str, account: tuple[str, str]
) -> None:
    login_profile(env, quarry_url, account, "spare")
    out = run_json(env, "logout", "--profile", "spare")
    assert out == {"profile": "spare", "url": quarry_url, "revoked": True, "removed": True}
    assert not (home / ".config" / "quarry" / "spare.json").exists()
    assert (home / ".config" / "quarry" / "default.json").exists()


def test_tokens_refreshed_by_a_command_are_saved_back_to_the_profile(
    env: dict[str, str], home: Path, quarry_url: str, account: tuple[str, str]
) -> None:
    email = login_profile(env, quarry_url, account, "refreshing")
    path = home / ".config" / "quarry" / "refreshing.json"
    stored = json.loads(path.read_text())
    # An access token whose `exp` has passed: the client refreshes before sending it.
    stored["access"] = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
            for part in ({"alg": "HS256", "typ": "JWT"}, {"exp": 1})
        )
        + ".c2lnbmF0dXJl"
    )
    path.write_text(json.dumps(stored))
    me = run_quarry(env, "whoami", "--profile", "refreshing", "--json")
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["email"] == email
    saved = json.loads(path.read_text())
    assert saved["access"] != stored["access"] and saved["refresh"] != stored["refresh"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = run_json({**env, "QUARRY_PROFILE": "refreshing"}, "whoami")
    assert again["email"] == email


def test_commands_refreshing_one_profile_at_once_keep_the_session(
    env: dict[str, str], home: Path, quarry_url: str, account: tuple[str, str]
) -> None:
    """Four commands find the profile's access token expired at the same moment:
    one refreshes and the others take its pair (spending the same refresh token
    twice would make the server revoke the session)."""
    email = login_profile(env, quarry_url, account, "busy")
    path = home / ".config" / "quarry" / "busy.json"
    stored = json.loads(path.read_text())
    stored["access"] = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
            for part in ({"alg": "HS256", "typ": "JWT"}, {"exp": 1})
        )
        + ".c2lnbmF0dXJl"
    )
    path.write_text(json.dumps(stored))
    commands = [
        subprocess.Popen(
            [str(QUARRY), "whoami", "--profile", "busy", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for command in commands:
        out, err = command.communicate(timeout=120)
        assert command.returncode == 0, err
        assert json.loads(out)["email"] == email
    assert run_json({**env, "QUARRY_PROFILE": "busy"}, "whoami")["email"] == email


def test_a_command_without_credentials_exits_1_saying_how_to_log_in(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path)
    done = run_quarry(environment, "db", "list")
    assert done.returncode == 1
    assert "quarry login" in done.stderr and done.stdout == ""
    error = json_error(run_quarry(environment, "db", "list", "--json"))
    assert error["error_code"] == "NOT_LOGGED_IN"


def test_wrong_password_is_refused_with_the_servers_error(
    tmp_path: Path, quarry_url: str, account: tuple[str, str]
) -> None:
    environment = cli_environment(tmp_path, QUARRY_PASSWORD="not the password")
    done = run_quarry(environment, "login", "--url", quarry_url, "--email", account[0], "--json")
    assert done.returncode == 1
    assert json_error(done)["error_code"] == "INVALID_CREDENTIALS"
    assert not (tmp_path / ".config" / "quarry" / "default.json").exists()


def test_usage_error_exits_2(env: dict[str, str]) -> None:
    assert run_quarry(env, "db", "create").returncode == 2
    done = run_quarry(env, "db", "create", "--json")
    assert done.returncode == 2
    assert json_error(done)["error_code"] == "USAGE_ERROR"


# ------------------------------------------------------------------ API keys


def test_an_api_key_in_the_environment_works_without_a_profile(
    env: dict[str, str], tmp_path: Path, quarry_url: str, quarry: Quarry
) -> None:
    created = run_json(env, "keys", "create", unique("ci"), "--expires-in-days", "7")
    assert created["key"] and created["id"]
    listed = run_json(env, "keys", "list")
    assert created["id"] in [key["id"] for key in listed]
    assert all("key" not in key for key in listed)
    script = cli_environment(tmp_path, QUARRY_URL=quarry_url, QUARRY_API_KEY=created["key"])
    database = run_json(script, "db", "create", unique("db"))["database"]
    assert quarry.databases.find(database["name"]) is not None
    assert run_json(env, "keys", "revoke", created["id"]) == {"id": created["id"], "revoked": True}
    refused = run_quarry(script, "db", "list", "--json")
    assert refused.returncode == 1
    assert json_error(refused)["error_code"] == "API_KEY_INVALID"


# ------------------------------------------------------------------ databases and schemas


def test_db_create_list_and_drop_by_name(env: dict[str, str], quarry: Quarry) -> None:
    created = run_json(env, "db", "create", unique("db"), "-c", "users", "--collection", "events")
    assert sorted(c["name"] for c in created["collections"]) == ["events", "users"]
    database = created["database"]
    listed = {d["name"]: d for d in run_json(env, "db", "list")}
    assert listed[database["name"]]["num_collections"] == 2
    collections = run_json(env, "db", "collections", database["name"])
    assert sorted(c["name"] for c in collections) == ["events", "users"]
    dropped = run_json(env, "db", "drop", database["name"], "--yes")
    assert dropped["id"] == database["id"] and dropped["dropped"] is True
    assert quarry.databases.find(database["name"]) is None


def test_db_drop_without_yes_and_without_a_terminal_drops_nothing(
    env: dict[str, str], quarry: Quarry
) -> None:
    database = new_database(quarry)
    done = run_quarry(env, "db", "drop", database["id"], "--json", stdin="")
    assert done.returncode == 1
    assert json_error(done)["error_code"] == "CONFIRMATION_REQUIRED"
    assert quarry.databases.find(database["name"]) is not None


def test_a_duplicate_database_is_the_servers_refusal_as_json(
    env: dict[str, str], quarry: Quarry
) -> None:
    database = new_database(quarry)
    done = run_quarry(env, "db", "create", database["name"], "--json")
    assert done.returncode == 1 and done.stdout == ""
    error = json_error(done)
    assert error["error_code"] == "DATABASE_EXISTS" and error["request_id"]


def test_db_schema_prints_and_sets_from_a_file(
    env: dict[str, str], tmp_path: Path, quarry: Quarry
) -> None:
    database = new_database(quarry, "people")
    empty = run_json(env, "db", "schema", database["name"], "people")
    assert empty["fields"] == [] and empty["strict"] is False
    schema = {
        "fields": [{"name": "email", "type": "string", "required": True, "unique": True}],
        "strict": True,
    }
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    updated = run_json(env, "db", "schema", database["id"], "people", "--set", str(path))
    assert updated["strict"] is True
    assert [(f["name"], f["type"], f["required"]) for f in updated["fields"]] == [
        ("email", "string", True)
    ]
    shown = run_quarry(env, "db", "schema", database["name"], "people")
    assert shown.returncode == 0 and "email" in shown.stdout and "email_unique" in shown.stdout


def test_db_schema_sets_declared_indexes_and_violations_are_converted(
    env: dict[str, str], tmp_path: Path, quarry: Quarry, sync_client: Any
) -> None:
    database = new_database(quarry, "orders")
    index = {
        "name": "by_price",
        "keys": [{"field": "price", "type": "float", "direction": -1}],
        "unique": False,
    }
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"fields": [], "indexes": [index]}))
    updated = run_json(env, "db", "schema", database["id"], "orders", "--set", str(path))
    assert updated["indexes"] == [index]
    assert [s["name"] for s in updated["index_states"]] == ["by_price"]
    db_name = quarry.databases.get(database["id"]).dbName
    sync_client[db_name]["orders"].insert_many([{"price": "3"}, {"price": "x"}])
    listed = run_json(env, "db", "violations", database["name"], "orders", "price")
    assert [v["type"] for v in listed] == ["string", "string"]
    converted = run_json(env, "db", "violations", database["name"], "orders", "price", "--convert")
    assert (converted["converted"], converted["unconvertible"]) == (1, 1)
    assert sorted(map(str, (d["price"] for d in sync_client[db_name]["orders"].find()))) == [
        "3.0",
        "x",
    ]


# ------------------------------------------------------------------ import and export


def test_import_of_100000_ndjson_lines_stores_them_all(
    env: dict[str, str], tmp_path: Path, quarry: Quarry
) -> None:
    database = new_database(quarry)
    path = tmp_path / "events.ndjson"
    with path.open("w") as out:
        for n in range(100_000):
            out.write(f'{{"n": {n}, "kind": "k{n % 7}", "ok": true}}\n')
    answer = run_json(env, "import", str(path), "--database", database["name"])
    assert answer["collection"] == "events"
    assert (answer["inserted_count"], answer["skipped_count"]) == (100_000, 0)
    assert quarry.documents.count(database["id"], "events") == 100_000


def test_import_abort_on_a_bad_record_names_its_index_and_imports_nothing(
    env: dict[str, str], tmp_path: Path, quarry: Quarry
) -> None:
    database = database_with_items(quarry, required=True)
    path = tmp_path / "items.ndjson"
    path.write_text(
        "".join(json.dumps({"n": n} if n != 37 else {"n": "x"}) + "\n" for n in range(50))
    )
    done = run_quarry(env, "import", str(path), "-d", database["id"], "-c", "items")
    assert done.returncode == 1
    assert "record 37" in done.stderr
    as_json = run_quarry(env, "import", str(path), "-d", database["id"], "-c", "items", "--json")
    assert as_json.returncode == 1 and as_json.stdout == ""
    assert [detail["index"] for detail in json_error(as_json)["details"]] == [37]
    assert quarry.documents.count(database["id"], "items") == 0


def test_import_skip_counts_the_bad_records(
    env: dict[str, str], tmp_path: Path, quarry: Quarry
) -> None:
    database = database_with_items(quarry, required=False)
    path = tmp_path / "items.json"
    path.write_text(json.dumps([{"n": 1}, {"n": "bad"}, {"n": 3}]))
    answer = run_json(
        env, "import", str(path), "-d", database["name"], "-c", "items", "--on-error", "skip"
    )
    assert (answer["inserted_count"], answer["skipped_count"]) == (2, 1)
    assert [error["index"] for error in answer["errors"]] == [1]


def test_export_to_a_file_round_trips_an_extended_json_import(
    env: dict[str, str], tmp_path: Path, quarry: Quarry
) -> None:
    database = new_database(quarry)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    documents = [
        {"_id": n, "name": f"doc {n}", "at": start + timedelta(hours=n), "tags": ["a", n]}
        for n in range(300)
    ]
    source = tmp_path / "docs.json"
    source.write_text(json_util.dumps(documents, json_options=json_util.CANONICAL_JSON_OPTIONS))
    run_json(env, "import", str(source), "-d", database["name"], "-c", "docs")
    for export_format in ("json", "ndjson"):
        target = tmp_path / f"export.{export_format}"
        summary = run_json(
            env, "export", "-d", database["name"], "-c", "docs", "--format", export_format,
            "-o", str(target),
        )  # fmt: skip
        assert summary["bytes"] == target.stat().st_size
        text = target.read_text()
        lines = [text] if export_format == "json" else text.splitlines()
        exported = [doc for line in lines for doc in _as_list(json_util.loads(line))]
        assert sorted(exported, key=lambda d: d["_id"]) == _naive(documents)


def test_export_without_a_file_streams_to_stdout(
    env: dict[str, str], tmp_path: Path, quarry: Quarry
) -> None:
    database = new_database(quarry)
    source = tmp_path / "rows.ndjson"
    source.write_text("".join(json.dumps({"_id": n, "v": n * 2}) + "\n" for n in range(20)))
    quarry.databases.import_file(database["id"], "rows", source)
    done = run_quarry(env, "export", "-d", database["id"], "-c", "rows", "-f", "csv")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split(",") == ["_id", "v"] and len(lines) == 21


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _naive(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What `json_util.loads` gives back for `documents` (naive UTC datetimes)."""
    return [{**d, "at": d["at"].replace(tzinfo=None)} for d in documents]


# ------------------------------------------------------------------ datasets and entries


def test_datasets_create_list_and_share(
    env: dict[str, str], quarry_url: str, smtp_server: Inbox, quarry: Quarry
) -> None:
    dataset = run_json(env, "datasets", "create", unique("ds"), "--description", "prices")
    assert dataset["description"] == "prices" and dataset["user_permission"] == "owner"
    assert dataset["id"] in [d["id"] for d in run_json(env, "datasets", "list")]
    assert run_json(env, "datasets", "show", dataset["name"])["id"] == dataset["id"]
    friend, _ = verified_account(quarry_url, smtp_server)
    share = run_json(
        env, "datasets", "share", dataset["id"], "--email", friend, "--permission", "write"
    )
    assert (share["email"], share["permission"]) == (friend, "write")
    assert [s.email for s in quarry.datasets.list_shares(dataset["id"])] == [friend]


def test_entries_upload_skip_existing_sends_only_new_files(
    env: dict[str, str], tmp_path: Path, quarry: Quarry
) -> None:
    dataset = new_dataset(quarry)
    folder = tmp_path / "files"
    (folder / "nested" / "deeper").mkdir(parents=True)
    for n, relative in enumerate(["a.txt", "b.csv", "nested/c.md", "nested/deeper/d.json"]):
        (folder / relative).write_text(f"file {n}\n" * (n + 1))
    first = run_json(env, "entries", "upload", dataset["id"], str(folder), "--skip-existing")
    assert (first["uploaded_count"], first["skipped_count"]) == (4, 0)
    again = run_json(env, "entries", "upload", dataset["id"], str(folder), "--skip-existing")
    assert (again["uploaded_count"], again["skipped_count"]) == (0, 4)
    (folder / "e.txt").write_text("something new")
    third = run_json(env, "entries", "upload", dataset["name"], str(folder), "--skip-existing")
    assert (third["uploaded_count"], third["skipped_count"]) == (1, 4)
    listed = run_json(env, "entries", "list", dataset["id"])
    assert sorted(e["filename"] for e in listed) == ["a.txt", "b.csv", "c.md", "d.json", "e.txt"]


def test_entries_download_resumes_a_partial_file(
    env: dict[str, str], tmp_path: Path, quarry: Quarry
) -> None:
    dataset = new_dataset(quarry)
    source = tmp_path / "blob.bin"
    source.write_bytes(bytes(range(256)) * 4096)
    entry = quarry.entries.upload(dataset["id"], source)[0].model_dump(mode="json")
    target = tmp_path / "copy.bin"
    part = tmp_path / f"copy.bin.{entry['id']}.part"
    part.write_bytes(source.read_bytes()[:300_000])  # an interrupted download
    saved = run_json(env, "entries", "download", entry["id"], "-o", str(target))
    assert saved["resumed_from"] == 300_000 and saved["sha256"] == entry["sha256"]
    assert target.read_bytes() == source.read_bytes()
    assert not part.exists()
    other = tmp_path / "mine.bin"
    other.write_bytes(b"someone else's file")
    refused = run_quarry(env, "entries", "download", entry["id"], "-o", str(other), "--json")
    assert refused.returncode == 1 and other.read_bytes() == b"someone else's file"


# ------------------------------------------------------------------ rows


def test_rows_load_stores_csv_and_ndjson_rows(
    env: dict[str, str], tmp_path: Path, quarry: Quarry
) -> None:
    dataset = new_dataset(quarry)
    csv_file = tmp_path / "prices.csv"
    csv_file.write_text(
        "timestamp,close,symbol\n"
        + "".join(f"2024-01-01T00:0{n}:00Z,{100 + n},ACME\n" for n in range(5))
    )
    loaded = run_json(env, "rows", "load", dataset["id"], str(csv_file))
    assert (loaded["inserted"], loaded["total"]) == (5, 5)
    ndjson_file = tmp_path / "more.ndjson"
    ndjson_file.write_text(
        "".join(
            json.dumps({"timestamp": f"2024-01-02T00:00:0{n}Z", "values": {"close": n}}) + "\n"
            for n in range(3)
        )
    )
    loaded = run_json(env, "rows", "load", dataset["name"], str(ndjson_file))
    assert loaded["inserted"] == 3
    rows = list(quarry.rows.iterate(dataset["id"]))
    assert len(rows) == 8
    assert rows[0].values == {"close": 100, "symbol": "ACME"}


#: `quarry …` run by a Python wrapper that, on SIGUSR1, makes Ctrl-C land while a
#: finalizer runs: Python's default handler would raise KeyboardInterrupt inside
#: it, where the exception is printed and dropped and the command reads on.
INTERRUPT_INSIDE_A_FINALIZER = """
import os, signal, sys
from app.console import main

class Finalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100_000):  # the SIGINT handler runs in here
            pass

signal.signal(signal.SIGUSR1, lambda signum, frame: Finalizer())
sys.exit(main(sys.argv[1:]))
"""


def _tail(
    env: dict[str, str], dataset_id: str, *, poll_interval: int, wrapped: bool = False
) -> subprocess.Popen[str]:
    command = ["rows", "tail", dataset_id, "--json", "--poll-interval", str(poll_interval)]
    launcher = [sys.executable, "-c", INTERRUPT_INSIDE_A_FINALIZER] if wrapped else [str(QUARRY)]
    return subprocess.Popen(
        [*launcher, *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@contextlib.contextmanager
def _following(
    env: dict[str, str], dataset_id: str, **options: Any
) -> Iterator[tuple[subprocess.Popen[str], LineReader, LineReader]]:
    """`quarry rows tail` running, once it said it follows; killed if still alive after."""
    process = _tail(env, dataset_id, **options)
    try:
        assert process.stdout is not None and process.stderr is not None
        errors, rows = LineReader(process.stderr), LineReader(process.stdout)
        errors.wait_for(lambda lines: any("Following" in line for line in lines), timeout=20)
        yield process, rows, errors
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _stopped(process: subprocess.Popen[str], errors: LineReader) -> None:
    """Ctrl-C ended the command: exit 0 and `Stopped.` (10 s is only a deadline)."""
    assert process.wait(timeout=10) == 0
    assert errors.wait_for(lambda lines: "Stopped." in lines, timeout=10)


def test_rows_tail_prints_rows_written_after_it_started(
    env: dict[str, str], quarry: Quarry
) -> None:
    dataset = new_dataset(quarry)
    quarry.rows.insert(dataset["id"], "2024-01-01T00:00:00Z", {"v": -1})
    with _following(env, dataset["id"], poll_interval=1) as (process, rows, errors):
        for n in range(3):
            quarry.rows.insert(dataset["id"], f"2024-01-01T00:00:0{n + 1}Z", {"v": n})
        printed = rows.wait_for(lambda lines: len(lines) >= 3, timeout=20)
        assert [json.loads(line)["values"] for line in printed] == [{"v": 0}, {"v": 1}, {"v": 2}]
        process.send_signal(signal.SIGINT)
        _stopped(process, errors)


def test_ctrl_c_stops_rows_tail_while_the_stream_is_silent(
    env: dict[str, str], quarry: Quarry
) -> None:
    # The server's next heartbeat is a minute away: the command is waiting on a read.
    dataset = new_dataset(quarry)
    with _following(env, dataset["id"], poll_interval=60) as (process, _rows, errors):
        process.send_signal(signal.SIGINT)
        _stopped(process, errors)


def test_ctrl_c_stops_rows_tail_even_when_it_lands_inside_a_finalizer(
    env: dict[str, str], quarry: Quarry
) -> None:
    dataset = new_dataset(quarry)
    options = {"poll_interval": 1, "wrapped": True}
    with _following(env, dataset["id"], **options) as (process, rows, errors):
        quarry.rows.insert(dataset["id"], "2024-01-01T00:00:01Z", {"v": 1})
        rows.wait_for(lambda lines: len(lines) >= 1, timeout=20)
        process.send_signal(signal.SIGUSR1)
        _stopped(process, errors)


# ------------------------------------------------------------------ the entry point


def test_server_commands_are_handed_to_the_server_package() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "quarry_client.cli", "engine", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "migrate" in done.stdout


def test_without_typer_and_rich_the_command_says_what_to_install() -> None:
    script = (
        "import sys; sys.modules['typer'] = None; "
        "from quarry_client.cli import main; sys.exit(main(['db', 'list']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "pip install 'quarry-client[cli]'" in done.stderr


@pytest.mark.parametrize(
    "command",
    [["import", "missing.ndjson", "-d", "db", "-c", "c"], ["rows", "load", "ds", "missing.csv"]],
)
def test_a_missing_file_is_bad_input_exit_1_before_anything_is_sent(
    tmp_path: Path, command: list[str]
) -> None:
    environment = cli_environment(
        tmp_path, QUARRY_URL="http://127.0.0.1:9", QUARRY_API_KEY="qk_unused"
    )
    done = run_quarry(environment, *command, "--json")
    assert done.returncode == 1, done.stderr
    assert json_error(done)["error_code"] == "FILE_ERROR"
    assert "missing" in json_error(done)["message"]


class ScriptedConversions:
    """A `databases` whose conversion answers are scripted (the loop alone under test)."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers
        self.afters: list[str | None] = []

    def convert_violations(
        self, database_id: str, collection: str, field: str, *, after: str | None = None
    ) -> ConversionAnswer:
        self.afters.append(after)
        base = {"field": field, "declared_type": "float", "cap": 1000}
        return ConversionAnswer.model_validate({**base, **self.answers[len(self.afters) - 1]})


def test_convert_follows_the_token_past_a_call_that_converted_nothing() -> None:
    """A call racing another conversion finds every document changed and converts
    none: the loop goes on while a token comes back, and sums the counts."""
    scripted = ScriptedConversions(
        [
            {
                "converted": 0,
                "unconvertible": 0,
                "changed": 200,
                "remaining": 9,
                "next_after": '{"$numberInt": "200"}',
            },
            {
                "converted": 9,
                "unconvertible": 1,
                "changed": 0,
                "conflicts": 1,
                "remaining": 0,
                "next_after": None,
            },
        ]
    )
    totals = convert_all(scripted, "db", "orders", "price")
    assert scripted.afters == [None, '{"$numberInt": "200"}']
    assert totals == {
        "converted": 9,
        "unconvertible": 1,
        "changed": 200,
        "conflicts": 1,
        "remaining": 0,
    }


def test_convert_against_a_server_without_tokens_stops_when_nothing_converts() -> None:
    scripted = ScriptedConversions(
        [
            {"converted": 5, "unconvertible": 0, "changed": 0, "remaining": 3},
            {"converted": 0, "unconvertible": 3, "changed": 0, "remaining": 3},
        ]
    )
    totals = convert_all(scripted, "db", "orders", "price")
    assert scripted.afters == [None, None]
    assert (totals["converted"], totals["remaining"]) == (5, 3)


def test_db_schema_output_goes_back_with_set(
    env: dict[str, str], tmp_path: Path, quarry: Quarry
) -> None:
    """An index without a name shows its derived name (`price_-1_sku_1`); the
    printed document is a valid --set file as it is."""
    database = new_database(quarry, "orders")
    keys = [
        {"field": "price", "type": "float", "direction": -1},
        {"field": "sku", "type": "string", "direction": 1},
    ]
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"fields": [], "indexes": [{"keys": keys}]}))
    first = run_json(env, "db", "schema", database["id"], "orders", "--set", str(path))
    assert [i["name"] for i in first["indexes"]] == ["price_-1_sku_1"]
    path.write_text(json.dumps(first))
    again = run_json(env, "db", "schema", database["id"], "orders", "--set", str(path))
    assert again["indexes"] == first["indexes"]
