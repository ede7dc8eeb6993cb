"""The embedded engine answers the server's own OS user only: FerretDB (which
authenticates nobody and acts as the PostgreSQL superuser) on a Unix socket in a
private directory and never on TCP, PostgreSQL on no TCP address and only with a
password, Quarry's own SQL connections as a role that reads and cannot write, and
a data directory closed to every other account.

"Another OS user" is `nobody` (created if missing): a child forked from the test
process drops to it and tries the engine's doors itself, so no interpreter has to
be readable by that account. Switching users needs root, which CI has.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import stat
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bson
import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pymongo import MongoClient
from pymongo.uri_parser import parse_uri

from app.engine import EmbeddedEngine, free_port
from app.engine.postgres import SYSTEM_USER, cluster_paths
from app.engine.process import open_engine_lock
from tests.fixtures.engine import REPO, DatabaseServer, run_quarry, serve_process

OTHER_USER = "nobody"


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("trying the engine as another OS user needs root (CI runs as root)")


@pytest.fixture(scope="module")
def other_user() -> pwd.struct_passwd:
    needs_root()
    try:
        return pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
            check=True,
        )
        return pwd.getpwnam(OTHER_USER)


def as_user(account: pwd.struct_passwd, work: Callable[[], str]) -> str:
    """`work()`'s answer, run in a child process that has become `account`."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            os.write(write_end, work().encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the probe as another user crashed"
    return answer


def knock(address: str | tuple[str, int], payload: bytes) -> str:
    """Connect to a Unix socket path or a TCP address, send `payload`: what came back
    as `answered <hex>`, or `refused <error>`."""
    try:
        if isinstance(address, str):
            connection = socket.socket(socket.AF_UNIX)
            connection.settimeout(5)
            connection.connect(address)
        else:
            connection = socket.create_connection(address, timeout=5)
        with connection:
            connection.sendall(payload)
            return "answered " + connection.recv(1 << 20).hex()
    except OSError as exc:
        return f"refused {type(exc).__name__}: {exc}"


def engine_address(url: str) -> str | tuple[str, int]:
    host, port = parse_uri(url)["nodelist"][0]
    return host if host.endswith(".sock") else (host, port)


def postgres_address(conninfo: str) -> str | tuple[str, int]:
    params = conninfo_to_dict(conninfo)
    host, port = str(params["host"]), int(params["port"])
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


def list_databases_message() -> bytes:
    """An OP_MSG `listDatabases`: what anyone reaching FerretDB may send."""
    body = b"\x00\x00\x00\x00" + b"\x00" + bson.encode({"listDatabases": 1, "$db": "admin"})
    return struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body


def startup_message() -> bytes:
    """PostgreSQL's StartupMessage for the superuser."""
    body = struct.pack(">i", 196608) + b"user\x00postgres\x00database\x00ferretdb\x00\x00"
    return struct.pack(">i", 4 + len(body)) + body


def tcp_listeners(pid: int) -> list[str]:
    """The TCP addresses (hex, as /proc/net has them) `pid` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(match.group(1))
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                listening.append(fields[1])
    return listening


@pytest.fixture
def engine(database_server: DatabaseServer) -> EmbeddedEngine:
    if database_server.engine is None:
        pytest.skip("running against an external MongoDB")
    return database_server.engine


def test_another_os_user_cannot_reach_the_engine(
    engine: EmbeddedEngine, other_user: pwd.struct_passwd
) -> None:
    address = engine_address(engine.url)
    message = list_databases_message()
    # The server's own user is answered...
    assert knock(address, message).startswith("answered ")
    # ...nobody else gets as far as a connection,
    answer = as_user(other_user, lambda: knock(address, message))
    assert answer.startswith("refused PermissionError"), answer
    # and there is no TCP door beside the socket.
    assert tcp_listeners(engine.pid) == []


def test_postgresql_own_account_cannot_reach_the_engine(engine: EmbeddedEngine) -> None:
    """As root, PostgreSQL's account passes through the socket directory to its own
    socket; the engine's is still closed to it."""
    needs_root()
    account = pwd.getpwnam(SYSTEM_USER)
    answer = as_user(account, lambda: knock(engine_address(engine.url), list_databases_message()))
    assert answer.startswith("refused PermissionError"), answer


def test_another_os_user_cannot_reach_postgresql(
    engine: EmbeddedEngine, other_user: pwd.struct_passwd
) -> None:
    conninfo = engine.postgres_conninfo()
    assert conninfo is not None and engine.postgres_pid is not None
    address = postgres_address(conninfo)
    assert knock(address, startup_message()).startswith("answered ")
    answer = as_user(other_user, lambda: knock(address, startup_message()))
    assert answer.startswith("refused PermissionError"), answer
    assert tcp_listeners(engine.postgres_pid) == []


def superuser_conninfo(engine: EmbeddedEngine) -> str:
    """Where the app's connections go, as the superuser FerretDB acts as."""
    conninfo = engine.postgres_conninfo()
    assert conninfo is not None
    password = cluster_paths(engine.data_dir)[1].read_text().strip()
    return make_conninfo(conninfo, user="postgres", password=password)


def test_postgresql_takes_no_login_without_a_password(engine: EmbeddedEngine) -> None:
    for conninfo in (engine.postgres_conninfo(), superuser_conninfo(engine)):
        assert conninfo is not None
        without = make_conninfo(conninfo, password="", passfile=os.devnull)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(without, connect_timeout=5)
    with psycopg.connect(superuser_conninfo(engine)) as connection:
        assert connection.execute("SHOW listen_addresses").fetchone() == ("",)
        methods = connection.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules")
        assert {row[0] for row in methods.fetchall()} == {"scram-sha-256"}


@pytest.fixture
def reader(engine: EmbeddedEngine) -> Iterator[psycopg.Connection[Any]]:
    """The app's own SQL connection, its sessions read-write so that only the
    role's rights stand between it and a write."""
    conninfo = engine.postgres_conninfo()
    assert conninfo is not None
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        yield connection


def ferretdb_table(client: MongoClient[dict[str, Any]], database: str, collection: str) -> str:
    """A collection made now, after the engine started (so after its grants ran)."""
    client[database][collection].insert_one({"_id": "a", "n": 1})
    return collection


def table_of(connection: psycopg.Connection[Any], database: str, collection: str) -> sql.Composed:
    (name,) = connection.execute(
        sql.SQL(
            "SELECT _jsonb ->> 'table' FROM {}._ferretdb_database_metadata "
            "WHERE _jsonb ->> '_id' = %s"
        ).format(sql.Identifier(database)),
        [collection],
    ).fetchone()
    return sql.SQL("{}").format(sql.Identifier(database, name))


WRITES = {
    "insert": "INSERT INTO {t} (_jsonb) VALUES ('{{}}')",
    "update": "UPDATE {t} SET _jsonb = _jsonb",
    "delete": "DELETE FROM {t}",
    "truncate": "TRUNCATE {t}",
    "create table": "CREATE TABLE {s}.quarry_reader_probe (x int)",
    "create schema": "CREATE SCHEMA quarry_reader_probe",
    "create temporary table": "CREATE TEMPORARY TABLE quarry_reader_probe (x int)",
    "create in public": "CREATE TABLE public.quarry_reader_probe (x int)",
    "large object": "SELECT lo_create(0)",
    "read password hashes": "SELECT rolpassword FROM pg_authid",
}


def test_the_reader_role_reads_every_ferretdb_table(
    reader: psycopg.Connection[Any], sync_client: MongoClient[dict[str, Any]]
) -> None:
    database = "security_reads_probe"
    ferretdb_table(sync_client, database, "things")
    table = table_of(reader, database, "things")
    assert reader.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone() == (1,)
    # The role is no superuser, and advisory locks (the write door's) are its to take.
    superuser = reader.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    assert superuser.fetchone() == (False,)
    with reader.transaction():
        reader.execute("SELECT pg_advisory_xact_lock(42)")


@pytest.mark.parametrize("statement", WRITES.values(), ids=WRITES.keys())
def test_the_reader_role_cannot_write(
    reader: psycopg.Connection[Any], sync_client: MongoClient[dict[str, Any]], statement: str
) -> None:
    database = "security_writes_probe"
    ferretdb_table(sync_client, database, "things")
    table = table_of(reader, database, "things")
    composed = sql.SQL(statement).format(t=table, s=sql.Identifier(database))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute(composed)
    assert sync_client[database]["things"].count_documents({}) == 1


def test_tables_made_before_the_reader_existed_are_readable_after_a_restart(
    tmp_path: Path, engine_binary: Path
) -> None:
    """An upgraded data directory: its tables were made when no reader role existed;
    every start grants on what is there."""
    engine = EmbeddedEngine.start(binary=engine_binary, data_dir=tmp_path / "data" / "pg")
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(engine.url)
        ferretdb_table(client, "older_probe", "things")
        client.close()
        with psycopg.connect(superuser_conninfo(engine), autocommit=True) as connection:
            connection.execute("REVOKE ALL ON SCHEMA older_probe FROM quarry_reader")
            connection.execute("REVOKE ALL ON ALL TABLES IN SCHEMA older_probe FROM quarry_reader")
        engine.stop()
        engine.restart()
        conninfo = engine.postgres_conninfo()
        assert conninfo is not None
        with psycopg.connect(conninfo) as connection:
            table = table_of(connection, "older_probe", "things")
            counted = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
            assert counted.fetchone() == (1,)
    finally:
        engine.stop()


def modes_open_to_others(root: Path) -> list[str]:
    """Every path under `root` (itself included) whose mode lets another account in:
    directories must be 0700 (or 0710 with the group of PostgreSQL's account, when
    Quarry runs as root), files and sockets accessible to their owner only."""
    passing_group = pwd.getpwnam(SYSTEM_USER).pw_gid if os.geteuid() == 0 else None
    wrong = []
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            fine = mode == 0o700 or (mode == 0o710 and info.st_gid == passing_group)
        else:
            fine = mode & 0o077 == 0
        if not fine:
            wrong.append(f"{path.relative_to(root.parent)} {oct(mode)}")
    return wrong


def test_the_data_directory_is_closed_to_other_users(tmp_path: Path, engine_binary: Path) -> None:
    data = tmp_path / "data"
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("QUARRY_")},
        "QUARRY_DATA_DIR": str(data),
        "QUARRY_FERRETDB_BIN": str(engine_binary),
    }

    def quarry(*args: str) -> subprocess.CompletedProcess[str]:
        return run_quarry(env, *args)

    started = quarry("engine", "start")
    assert started.returncode == 0, started.stderr
    try:
        status = quarry("engine", "status")
        record = json.loads((data / "engine.json").read_text())
        assert f"socket {record['socket']}" in status.stdout
        assert modes_open_to_others(data) == []
    finally:
        stopped = quarry("engine", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert modes_open_to_others(data) == []


def test_a_data_directory_too_deep_for_a_socket_path_gets_a_private_one(
    tmp_path: Path, engine_binary: Path, other_user: pwd.struct_passwd
) -> None:
    data = tmp_path / ("deep-" * 16) / "data"
    engine = EmbeddedEngine.start(binary=engine_binary, data_dir=data / "pg")
    try:
        assert len(os.fsencode(engine.socket)) <= 107
        assert not engine.socket.is_relative_to(data)
        base = engine.socket.parent.parent
        assert base.name == f"quarry-{os.geteuid()}" and base.stat().st_uid == os.geteuid()
        assert modes_open_to_others(engine.socket.parent.parent) == []
        answer = as_user(other_user, lambda: knock(str(engine.socket), list_databases_message()))
        assert answer.startswith("refused PermissionError"), answer
        client: MongoClient[dict[str, Any]] = MongoClient(engine.url)
        client.deep_probe.things.insert_one({"a": 1})
        client.close()
        # A restart finds the same place: clients keep their URL.
        url = engine.url
        engine.stop()
        engine.restart()
        assert engine.url == url
        client = MongoClient(engine.url)
        assert client.deep_probe.things.count_documents({}) == 1
        client.close()
    finally:
        engine.stop()
        shutil.rmtree(engine.socket.parent, ignore_errors=True)


def test_what_a_serving_server_writes_is_private(
    tmp_path: Path, engine_binary: Path, database_server: DatabaseServer
) -> None:
    """`quarry serve` creates its files 0600 and directories 0700 (umask 077): the
    mail outbox, which holds live verification links, and the rest of the data
    directory, also on an engine reached through `QUARRY_MONGODB_URL`."""
    port = free_port()
    server = serve_process(
        tmp_path,
        engine_binary,
        port,
        QUARRY_MONGODB_URL=database_server.url,
        QUARRY_CONTROL_DB=f"quarry_modes_{os.getpid()}",
        QUARRY_SMTP_HOST="",
        QUARRY_ENV="development",
    )
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            assert server.poll() is None and time.monotonic() < deadline, "no /health"
            time.sleep(0.2)
        registered = httpx.post(
            f"http://127.0.0.1:{port}/core/register",
            json={"email": "modes@example.com", "firstName": "A", "lastName": "B",
                  "password": "correct horse battery staple 9"},
            timeout=30,
        )  # fmt: skip
        assert registered.status_code == 201, registered.text
    finally:
        server.terminate()
        server.wait(timeout=30)
    data = tmp_path / "data"
    mails = list((data / "outbox").glob("*.eml"))
    assert mails, sorted(p.name for p in data.rglob("*"))
    for path in [data, *data.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink() or path.is_socket():
            continue
        allowed = 0o700 if path.is_dir() else 0o600
        assert mode & ~allowed == 0, f"{path}: {oct(mode)}"


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_engine_lock_is_created_private(tmp_path: Path) -> None:
    """Every holder of `engine.lock` (engine, migrate, backup, restore) opens it
    through one helper, which creates it 0600."""
    with open_engine_lock(tmp_path) as lock:
        assert stat.S_IMODE(os.fstat(lock.fileno()).st_mode) == 0o600
    sources = "".join(
        (REPO / "app" / "engine" / name).read_text() for name in ("migrate.py", "backup.py")
    )
    assert '"engine.lock"' not in sources
