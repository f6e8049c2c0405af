"""Accessories and backups against real PostgreSQL 15 and Redis 7 servers that Headway itself
starts under the test's $HEADWAY_HOME, driven from the CLI: migrations with a backup first,
a failed migration restored from the backup it names, backup / verify / restore round trips,
retention, a backup killed half-way, and the accessories' passwords leaking nowhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import App, free_port

MIGRATE = '''import os, subprocess, sys, urllib.parse
from pathlib import Path
url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
env = dict(os.environ, PGHOST=url.hostname, PGPORT=str(url.port), PGUSER=url.username,
           PGPASSWORD=urllib.parse.unquote(url.password), PGDATABASE=url.path[1:])
def psql(*args):
    return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", *args], env=env,
                          capture_output=True, text=True)
psql("-c", "CREATE TABLE IF NOT EXISTS schema_migrations(name text PRIMARY KEY)")
done = set(psql("-c", "SELECT name FROM schema_migrations").stdout.split())
for f in sorted(Path("migrations").glob("*.sql")):
    if f.stem not in done:
        run = psql("-f", str(f))
        if run.returncode:
            sys.exit(f"migration {f.stem} failed: {run.stderr.strip()}")
        psql("-c", f"INSERT INTO schema_migrations VALUES ('{f.stem}')")
        print("applied", f.stem, flush=True)
'''

WORKER = '''import os, socket, time, urllib.parse
url = urllib.parse.urlsplit(os.environ["REDIS_URL"])
conn = socket.create_connection((url.hostname, url.port))
def cmd(*words):
    conn.sendall(f"*{len(words)}\\r\\n".encode()
                 + b"".join(f"${len(w)}\\r\\n{w}\\r\\n".encode() for w in words))
    return conn.recv(100)
print(cmd("AUTH", urllib.parse.unquote(url.password)), cmd("INCR", "worker_starts"), flush=True)
time.sleep(3600)
'''


def with_accessories(app: App, *, migrate: bool = False) -> None:
    app.configure(accessories__db='type = "postgres"\nversion = "15"',
                  accessories__cache='type = "redis"')
    if migrate:
        (app.dir / "migrate.py").write_text(MIGRATE)
        (app.dir / "migrations").mkdir()
        (app.dir / "migrations" / "001_users.sql").write_text(
            "CREATE TABLE users(id int PRIMARY KEY, name text);\n")
        app.configure(release='command = "python3 migrate.py"')


def sql(app: App, query: str) -> str:
    return app.run("accessory", "psql", "db", "--", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                   "-c", query).stdout.strip()


def redis(app: App, *words: str) -> str:
    return app.run("accessory", "redis-cli", "cache", *words).stdout.strip()


@pytest.mark.integration
def test_migration_backs_up_first_and_a_failed_one_is_restored_from_the_named_backup(
        app: App) -> None:
    with_accessories(app, migrate=True)
    (app.dir / "worker.py").write_text(WORKER)
    app.configure(processes__worker='command = "python3 worker.py"',
                  processes__worker__health='path = ""\ninterval = "200ms"')
    first = app.run("deploy")
    assert "creating accessory db (postgres)" in first.stderr
    assert "applied 001_users" in (app.home / "apps/hello/production/logs/release-1.log").read_text()
    sql(app, "INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 300) g")
    before = sql(app, "SELECT * FROM users ORDER BY id")

    app.set_version("v2")
    (app.dir / "migrations" / "002_email.sql").write_text(  # damages data, then fails
        "DELETE FROM users WHERE id > 10;\nALTER TABLE users ADD COLUMN email text;\n"
        "SELECT 1 / 0;\n")
    failed = app.run("deploy", check=False)
    assert failed.returncode == 4, failed.stderr
    assert "no traffic moved" in failed.stderr and "division by zero" in failed.stderr
    assert app.version() == "v1"
    assert sql(app, "SELECT count(*) FROM users") == "10"
    named = next(line for line in failed.stderr.splitlines() if "to put it back:" in line)
    command = named.split("to put it back: ")[1].split()
    assert command[:6] == ["headway", "--env", "production", "backup", "restore", "db"]
    restored = app.run(*command[1:], "--yes")
    assert "restored" in restored.stdout
    assert sql(app, "SELECT * FROM users ORDER BY id") == before  # every row, as it was
    assert sql(app, "SELECT name FROM schema_migrations") == "001_users"
    listed = json.loads(app.run("backup", "list", "db", "--json").stdout)
    assert any(b["release"] == 2 and b["reason"] == "before release 2" for b in listed)

    (app.dir / "migrations" / "002_email.sql").write_text(
        "ALTER TABLE users ADD COLUMN email text;\n")
    assert "release 3 is live" in app.run("deploy").stdout
    assert sql(app, "SELECT name FROM schema_migrations ORDER BY 1") == "001_users\n002_email"
    assert sql(app, "SELECT count(*) FROM users") == "300"
    back = app.run("rollback", "1")
    back.stdout += back.stderr
    assert "the database is not rolled back" in back.stdout
    assert "Release 3 ran its release command" in back.stdout
    assert "headway --env production backup restore db db-" in back.stdout
    assert int(redis(app, "GET", "worker_starts")) >= 1  # REDIS_URL reached the worker

    # the accessories' passwords: only in the encrypted store and the instances' environment
    urls = dict(line.split("=", 1) for line in app.run("secrets", "export").stdout.split())
    words = [urllib.parse.urlsplit(urls[k]).password for k in ("DATABASE_URL", "REDIS_URL")]
    # an app that insists on SSL (Heroku-style) connects too: the server has a certificate
    db = urllib.parse.urlsplit(urls["DATABASE_URL"])
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    ssl = subprocess.run(["psql", "-XAtc", query], capture_output=True, text=True, check=False,
                         env=dict(os.environ, PGSSLMODE="require", PGHOST=db.hostname or "",
                                  PGPORT=str(db.port), PGUSER=db.username or "",
                                  PGPASSWORD=urllib.parse.unquote(db.password or ""),
                                  PGDATABASE=db.path[1:]))
    assert ssl.stdout.strip() == "t", ssl.stderr
    shown = [app.run(*c).stdout for c in (("status", "--json"), ("events", "--json"),
                                          ("accessory", "status", "--json"),
                                          ("backup", "list", "--json"), ("logs",),
                                          ("accessory", "logs", "db"),
                                          ("config", "show", "--json"))]
    table = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                           check=True).stdout
    for word in words:
        assert word and len(word) >= 24
        assert not any(word in text for text in [*shown, table, first.stderr, failed.stderr])
        for path in app.home.rglob("*"):
            if path.is_file() and not path.is_socket():
                assert word.encode() not in path.read_bytes(), path


@pytest.mark.integration
def test_backup_verify_restore_round_trip_and_retention(app: App) -> None:
    with_accessories(app)
    app.configure(backups='keep_last = 2\nkeep_daily = 0\nkeep_weekly = 0')
    app.run("deploy")
    assert "accessories:" in app.run("status").stdout
    status = json.loads(app.run("accessory", "status", "--json").stdout)
    assert {(a["name"], a["state"]) for a in status} == {("db", "healthy"), ("cache", "healthy")}
    sql(app, "CREATE TABLE items(id int, body text); INSERT INTO items SELECT g, md5(g::text) "
             "FROM generate_series(1, 5000) g")
    for n in range(40):
        redis(app, "SET", f"key:{n}", str(n))
    made = json.loads(app.run("backup", "create", "--json").stdout)
    shown = json.loads(app.run("status", "--json").stdout)["accessories"]
    assert all(a["last_backup"] for a in shown)
    assert {b["accessory"] for b in made} == {"db", "cache"}
    db_backup = next(b for b in made if b["accessory"] == "db")

    verified = json.loads(app.run("backup", "verify", "db", "--json").stdout)[0]
    assert verified["details"] == {"tables": {"public.items": 5000}}
    verified = json.loads(app.run("backup", "verify", "cache", "--json").stdout)[0]
    assert verified["details"] == {"keys": {"db0": 40}}

    sql(app, "DELETE FROM items WHERE id > 100")
    redis(app, "FLUSHALL")
    app.run("backup", "restore", "db", db_backup["id"], "--into", "items_copy", "--yes")
    assert app.run("accessory", "psql", "db", "--", "-At", "-d", "items_copy", "-c",
                   "SELECT count(*) FROM items").stdout.strip() == "5000"
    assert sql(app, "SELECT count(*) FROM items") == "100"  # --into left the live one alone
    app.run("backup", "restore", "db", "--yes")
    app.run("backup", "restore", "cache", "--yes")
    assert sql(app, "SELECT count(*), sum(length(body)) FROM items") == "5000|160000"
    assert redis(app, "DBSIZE") == "40" and redis(app, "GET", "key:7") == "7"
    redis(app, "SET", "after", "restore")
    app.run("accessory", "restart", "cache")
    assert redis(app, "GET", "after") == "restore"  # the append-only file was rebuilt

    for _ in range(2):
        app.run("backup", "create", "db")
    kept = json.loads(app.run("backup", "list", "db", "--json").stdout)
    pruned = app.run("backup", "prune", "db").stdout  # keep_last = 2
    assert f"deleted by the retention policy: 1\n  {db_backup['id']}" in pruned
    after = json.loads(app.run("backup", "list", "db", "--json").stdout)
    assert [b["id"] for b in after] == [b["id"] for b in kept[:2]]
    assert not Path(db_backup["path"]).exists()

    newest = Path(after[0]["path"])
    newest.write_bytes(newest.read_bytes()[:-10] + b"0123456789")
    broken = app.run("backup", "verify", "db", after[0]["id"], check=False)
    assert broken.returncode != 0 and "recorded checksum" in broken.stderr


@pytest.mark.integration
def test_a_backup_killed_half_way_leaves_the_earlier_ones_intact(app: App) -> None:
    with_accessories(app)
    app.run("deploy")
    sql(app, "CREATE TABLE blobs AS SELECT g AS id, repeat(md5(g::text), 40) AS body "
             "FROM generate_series(1, 150000) g")
    good = json.loads(app.run("backup", "create", "db", "--json").stdout)[0]
    folder = Path(good["path"]).parent
    sql(app, "INSERT INTO blobs SELECT g, repeat(md5(random()::text), 40) "
             "FROM generate_series(150001, 400000) g")
    cli = app.popen("backup", "create", "db")
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size > 0 for p in folder.glob(".*.partial")):
        assert time.monotonic() < deadline and cli.poll() is None, "no partial file seen"
        time.sleep(0.01)
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    listed = json.loads(app.run("backup", "list", "db", "--json").stdout)
    assert [b["id"] for b in listed] == [good["id"]]
    assert json.loads(app.run("backup", "verify", "db", "--json").stdout)[0]["details"] == \
        {"tables": {"public.blobs": 150000}}
    app.run("backup", "create", "db")  # the next backup works and clears the leftover
    assert not list(folder.glob(".*.partial"))
    assert len(json.loads(app.run("backup", "list", "db", "--json").stdout)) == 2


@pytest.mark.integration
def test_accessory_config_errors_name_the_key(app: App) -> None:
    app.configure(accessories__db='type = "postgres"\nversion = "9"')
    bad = app.run("deploy", check=False)
    assert bad.returncode == 2 and "PostgreSQL 9 is not installed" in bad.stderr
    assert not (app.home / "router").exists()
    app.configure(accessories__db='version = "15"', release='backup = ["nope"]')
    bad = app.run("config", "check", check=False)
    assert bad.returncode == 2 and "release.backup: no accessory or volume 'nope'" in bad.stderr


@pytest.fixture(autouse=True)
def _servers_installed() -> None:
    for tool in ("/usr/bin/redis-server", "/usr/lib/postgresql/15/bin/postgres"):
        if not Path(tool).exists():
            pytest.fail(f"{tool} is not installed: run scripts/setup.sh")


@pytest.mark.integration
def test_scheduled_backups_with_copies_and_secrets_from_outside(
        app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_accessories(app)
    offsite, cert = tmp_path / "offsite", tmp_path / "cert.pem"
    app.configure(backups=f'schedule = "1s"\ncopy_to = "{offsite}"',
                  secrets=f'API_TOKEN = "env:HW_TEST_TOKEN"\nCERT = "file:{cert}"',
                  volumes='data = "data"')
    cert.write_text("cert-one\n")
    missing = app.run("deploy", check=False)
    assert missing.returncode == 2
    assert "secrets.API_TOKEN = 'env:HW_TEST_TOKEN': environment variable HW_TEST_TOKEN is " \
           "not set" in missing.stderr
    monkeypatch.setenv("HW_TEST_TOKEN", "token-one")
    app.run("deploy")
    exported = app.run("secrets", "export").stdout
    assert "API_TOKEN=token-one" in exported and "CERT=cert-one" in exported
    assert "nothing to do" in app.run("deploy").stdout
    cert.write_text("cert-two\n")
    assert "release 2 is live" in app.run("deploy").stdout  # a changed source: a new release

    deadline = time.monotonic() + 30
    while {b["accessory"] for b in json.loads(app.run("backup", "list", "--json").stdout)
           if b["reason"] == "scheduled"} != {"db", "cache", "data"}:  # data: a volume
        assert time.monotonic() < deadline, "the agent took no scheduled backup"
        time.sleep(0.5)
    db = next(b for b in json.loads(app.run("backup", "list", "db", "--json").stdout))
    assert Path(db["copy"]).read_bytes() == Path(db["path"]).read_bytes()
    assert Path(db["copy"]).is_relative_to(offsite)
    volume = next(b for b in json.loads(app.run("backup", "list", "data", "--json").stdout))
    assert Path(volume["copy"]).read_bytes() == Path(volume["path"]).read_bytes()
    Path(db["path"]).unlink()  # the first copy is lost: the second one still restores
    assert "checksum ok" in app.run("backup", "verify", "db", db["id"]).stdout


@pytest.mark.integration
def test_the_agent_restarts_a_killed_accessory_and_nothing_is_lost(app: App) -> None:
    with_accessories(app)
    app.run("deploy")
    redis(app, "SET", "order:1", "paid")
    sql(app, "CREATE TABLE orders AS SELECT 1 AS id")
    for name in ("cache", "db"):
        (row,) = [a for a in json.loads(app.run("accessory", "status", "--json").stdout)
                  if a["name"] == name]
        os.kill(row["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            (now,) = [a for a in json.loads(app.run("accessory", "status", "--json").stdout)
                      if a["name"] == name]
            if now["state"] == "healthy" and now["pid"] != row["pid"]:
                break
            assert time.monotonic() < deadline, f"{name} was not restarted: {now}"
            time.sleep(0.3)
    assert redis(app, "GET", "order:1") == "paid"
    assert sql(app, "SELECT count(*) FROM orders") == "1"
    assert "accessory.restarted" in app.run("events").stdout


@pytest.mark.integration
def test_each_environment_has_its_own_accessories_and_secrets(app: App) -> None:
    with_accessories(app)
    app.configure(env='[env.staging]\nLOG = "debug"')
    app.run("deploy")
    staging_port = free_port()
    toml = app.dir / "headway.toml"
    text = toml.read_text()
    toml.write_text(text.replace(f"port = {app.port}", f"port = {staging_port}"))
    app.run("--env", "staging", "deploy")
    toml.write_text(text)
    app.run("--env", "staging", "accessory", "psql", "db", "--", "-c",
            "CREATE TABLE only_in_staging(id int)")
    tables = sql(app, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_staging'")
    assert tables == "0"  # production's database is another server
    prod, staging = (json.loads(app.run(*env, "accessory", "status", "--json").stdout)
                     for env in ((), ("--env", "staging")))
    assert {a["address"] for a in prod}.isdisjoint(a["address"] for a in staging)
    urls = [app.run(*env, "secrets", "export").stdout for env in ((), ("--env", "staging"))]
    assert urls[0] != urls[1]
    app.run("--env", "staging", "destroy", "--yes")
    assert [a["state"] for a in json.loads(app.run("accessory", "status", "--json").stdout)] \
        == ["healthy", "healthy"]  # destroying staging left production's running


PARTS_CHECK = '''import os, subprocess, sys
env = dict(os.environ, PGHOST=os.environ["DB_HOST"], PGPORT=os.environ["DB_PORT"],
           PGUSER=os.environ["DB_USER"], PGPASSWORD=os.environ["DB_PASSWORD"],
           PGDATABASE=os.environ["DB_NAME"])
done = subprocess.run(["psql", "-X", "-At", "-c", "SELECT current_user"], env=env,
                      capture_output=True, text=True)
sys.exit(done.stderr) if done.returncode else print("connected as", done.stdout.strip())
'''


@pytest.mark.integration
def test_accessory_parts_reach_the_app_as_variables_pinned_like_secrets(app: App) -> None:
    """An app whose settings read DB_HOST/DB_PASSWORD... gets them from the accessory, with
    no password copied by hand; a variable the user set themselves is never overwritten."""
    app.configure(accessories__db='type = "postgres"\nversion = "15"\nenv = { DB_HOST = '
                  '"host", DB_PORT = "port", DB_USER = "user", DB_PASSWORD = "password", '
                  'DB_NAME = "database" }',
                  release='command = "python3 parts.py"')
    (app.dir / "parts.py").write_text(PARTS_CHECK)
    app.run("deploy")
    log = next((app.home / "apps" / "hello" / "production" / "logs").glob("release-1.log"))
    assert "connected as hello" in log.read_text()
    exported = dict(line.split("=", 1) for line in
                    app.run("secrets", "export").stdout.splitlines() if "=" in line)
    url = urllib.parse.urlsplit(exported["DATABASE_URL"])
    assert exported["DB_PASSWORD"] == urllib.parse.unquote(url.password or "")
    assert (exported["DB_HOST"], exported["DB_PORT"]) == ("127.0.0.1", str(url.port))
    # dropping a part from env removes its variable at the next deploy; a scheme set later
    # rewrites the URL, password kept
    app.configure(accessories__db='env = { DB_HOST = "host" }\nscheme = "postgres"',
                  release='command = "true"')
    app.run("deploy")
    later = app.run("secrets", "export").stdout
    assert f"DATABASE_URL=postgres://{exported['DATABASE_URL'].split('://', 1)[1]}" in later
    names = json.loads(app.run("secrets", "list", "--json").stdout)
    names = [n["name"] if isinstance(n, dict) else n for n in names]
    assert "DB_HOST" in names and "DB_PASSWORD" not in names
    # a secret set by hand under a mapped name is refused, not overwritten
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "DB_NAME"],
                   input="mine", text=True, cwd=app.dir, env=app.env(), check=True,
                   capture_output=True)
    app.configure(accessories__db='env = { DB_HOST = "host", DB_NAME = "database" }')
    refused = app.run("deploy", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "accessories.db.env.DB_NAME" in refused.stderr + refused.stdout


@pytest.mark.integration
def test_an_accessory_port_in_use_names_what_holds_it(app: App) -> None:
    app.run("deploy")
    held = json.loads(app.run("status", "--json").stdout)
    inst = held["instances"][0]
    app.configure(accessories__db=f'type = "postgres"\nversion = "15"\nport = {inst["port"]}')
    bad = app.run("deploy", check=False)
    assert bad.returncode == 2, bad.stderr
    assert f"accessories.db.port: {inst['port']} is already used on this host by the " \
           f"instance {inst['id']} of hello (production)" in bad.stderr
    assert "Traceback" not in bad.stderr
