"""`headway generate compose`, from the CLI: the files validate against the compose-spec
schema (check-jsonschema's built-in copy, offline), .env is made once with generated values
(0600, untracked, kept on a second run), nothing of the user's is overwritten without --force,
and the bundled example with a PostgreSQL and a Redis accessory comes up for real with
podman-compose and answers. postgres:15 and redis:7 are stand-ins made from Debian's packages
(tests/compose_images.py), since official images cannot be pulled here."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from headway.builder.common import Detected
from headway.pipeline import compose
from headway.spec.models import Spec
from tests import compose_images
from tests.conftest import App, free_port

ACCESSORIES = {"accessories__db": 'type = "postgres"\nversion = "15"',
               "accessories__cache": 'type = "redis"'}


def schema_errors(path: Path) -> list[str]:
    """The compose-spec schema check-jsonschema ships (`--builtin-schema vendor.compose-spec`),
    run in this process: its CLI takes seconds to start."""
    if "jsonschema" not in sys.modules:  # an optional format checker's grammar takes 5 s
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # to build: unused
        import jsonschema
        del sys.modules["rfc3987_syntax"]
    import jsonschema

    package = importlib.util.find_spec("check_jsonschema")
    assert package is not None and package.submodule_search_locations
    schema = json.loads((Path(package.submodule_search_locations[0]) / "builtin_schemas" /
                         "vendor" / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(yaml.safe_load(path.read_text()))]


def generate(app: App, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return app.run("generate", "compose", *args, check=check)


def test_compose_files_validate_and_wire_accessories_env_and_secrets(app: App) -> None:
    app.configure(**ACCESSORIES, env='GREETING = "hi $USER"', app='secrets = ["API_TOKEN"]',
                  secrets='SECRET_KEY = "generate:50"')
    subprocess.run(["git", "init", "-q", str(app.dir)], check=True)
    done = generate(app, "--port", "18555")
    for name in ("compose.yaml", "compose.override.yaml"):
        assert schema_errors(app.dir / name) == [], name
    main = yaml.safe_load((app.dir / "compose.yaml").read_text())
    db, cache, web = (main["services"][n] for n in ("db", "cache", "web"))
    assert web["depends_on"] == {"db": {"condition": "service_healthy"},
                                 "cache": {"condition": "service_healthy"}}
    assert db["image"] == "docker.io/library/postgres:15" and "healthcheck" in db
    assert db["volumes"] == ["db-data:/var/lib/postgresql/data"]
    assert cache["image"] == "docker.io/library/redis:7" and "healthcheck" in cache
    assert set(main["volumes"]) == {"db-data", "cache-data"}
    assert web["ports"] == ["127.0.0.1:18555:8080"]
    assert "FROM docker.io/library/python:3.11-slim" in web["build"]["dockerfile_inline"]
    env = web["environment"]
    assert env["GREETING"] == "hi $$USER"  # compose would interpolate a single $
    assert env["DATABASE_URL"] == "postgresql://hello:${DB_PASSWORD}@db:5432/hello"
    assert env["REDIS_URL"] == "redis://:${CACHE_PASSWORD}@cache:6379/0"
    assert env["API_TOKEN"] == "${API_TOKEN}" and env["SECRET_KEY"] == "${SECRET_KEY}"
    assert db["environment"]["POSTGRES_PASSWORD"] == "${DB_PASSWORD}"
    text = (app.dir / "compose.yaml").read_text()
    # .env: generated values, 0600, ignored by git, and never printed
    dotenv = app.dir / ".env"
    values = dict(line.split("=", 1) for line in dotenv.read_text().splitlines()
                  if line and not line.startswith("#"))
    assert set(values) == {"DB_PASSWORD", "CACHE_PASSWORD", "API_TOKEN", "SECRET_KEY"}
    assert len(values["SECRET_KEY"]) == 50 and len(values["DB_PASSWORD"]) == 32
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    assert all(v not in done.stdout + done.stderr + text for v in values.values())
    assert subprocess.run(["git", "-C", str(app.dir), "check-ignore", "-q", ".env"],
                          check=False).returncode == 0
    override = yaml.safe_load((app.dir / "compose.override.yaml").read_text())["services"]["web"]
    assert override["volumes"] == [".:/app"] and override["ports"] == ["127.0.0.1:5678:5678"]
    assert "no reload command known for `python3 app.py`" in done.stdout

    # never overwrite without --force; with it, .env keeps every value (a volume has them)
    refused = generate(app, check=False)
    assert refused.returncode == 2 and f"{app.dir / 'compose.yaml'} exists" in refused.stderr
    assert "--force" in refused.stderr
    app.configure(accessories__db='scheme = "postgres"')  # e.g. Tortoise ORM's scheme
    generate(app, "--force")
    web = yaml.safe_load((app.dir / "compose.yaml").read_text())["services"]["web"]
    assert web["environment"]["DATABASE_URL"] == "postgres://hello:${DB_PASSWORD}@db:5432/hello"
    assert dotenv.read_text().count("DB_PASSWORD=") == 1
    assert values["DB_PASSWORD"] in dotenv.read_text()
    assert (app.dir / ".gitignore").read_text().count(".env") == 1


def test_bad_input_names_the_file_or_key(app: App) -> None:
    subprocess.run(["git", "init", "-q", str(app.dir)], check=True)
    (app.dir / ".env").write_text("X=1\n")
    subprocess.run(["git", "-C", str(app.dir), "add", "-f", ".env"], check=True)
    tracked = generate(app, check=False)
    assert tracked.returncode == 2 and ".env is tracked by git" in tracked.stderr
    subprocess.run(["git", "-C", str(app.dir), "rm", "-q", "--cached", ".env"], check=True)
    app.configure(accessories__web='type = "redis"')
    clash = generate(app, check=False)
    assert clash.returncode == 2 and "accessories.web" in clash.stderr
    assert "processes.web" in clash.stderr


SPEC = {"app": {"name": "shop"}, "processes": {"web": {"command": "uvicorn main:app --host $HOST"
                                                       " --port $PORT"},
                                               "worker": {"command": "celery -A tasks worker "
                                                          "--concurrency $WORKERS"}},
        "accessories": {"db": {"type": "postgres", "env": {"PGHOST": "host",
                                                            "PGPASSWORD": "password"}}},
        "volumes": {"uploads": "media/uploads"}}


def test_processes_reload_debugger_and_volumes_render_for_compose() -> None:
    spec = Spec.model_validate(SPEC)
    found = Detected(name="shop", command="", explain="", language="python")
    out = compose.render(spec, found, compose.Build("./app", dockerfile="Dockerfile"), env={},
                         port=8000)
    main = yaml.safe_load(out.main)["services"]
    assert main["web"]["command"] == ["uvicorn", "main:app", "--host", "0.0.0.0", "--port",
                                      "8080"]
    # a variable other than HOST/PORT is the container's shell's, escaped from compose
    worker = "celery -A tasks worker --concurrency $$WORKERS"
    assert main["worker"]["command"] == ["sh", "-c", worker]
    assert "ports" not in main["worker"]
    assert main["web"]["build"] == {"context": "./app", "dockerfile": "Dockerfile"}
    assert main["web"]["volumes"] == ["uploads:/app/media/uploads"]
    assert main["web"]["environment"]["PGHOST"] == "db"
    assert main["web"]["environment"]["PGPASSWORD"] == "${DB_PASSWORD}"
    assert main["db"]["image"] == "docker.io/library/postgres:17"
    override = yaml.safe_load(out.override)["services"]
    assert override["web"]["command"][-1] == "--reload"
    assert override["web"]["volumes"] == ["./app:/app"]
    assert compose.reload_command("node server.js") == ["node", "--watch", "server.js"]
    assert compose.reload_command("gunicorn app.wsgi -b $HOST:$PORT")[-1] == "--reload"
    assert compose.reload_command("python3 app.py") is None


@pytest.mark.integration
def test_the_example_with_postgres_and_redis_comes_up_with_podman_compose(app: App) -> None:
    """One real bring-up: the generated image builds, the accessories pass their own
    healthchecks, the app answers and reaches both by service name with .env's passwords."""
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: run scripts/setup.sh")
    from tests import images

    images.ensure()
    compose_images.ensure()
    app.configure(**ACCESSORIES)
    port, project = free_port(), f"hw{os.getpid()}{time.monotonic_ns() % 10**6}"
    generate(app, "--port", str(port))
    tool = [str(Path(sys.executable).parent / "podman-compose"), "-p", project]
    try:
        up = subprocess.run([*tool, "up", "-d"], cwd=app.dir, capture_output=True, text=True,
                            timeout=600, check=False)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        deadline = time.monotonic() + 60
        while True:  # podman 4.3 has no healthcheck timers without systemd: run them here
            checks = [subprocess.run(["podman", "healthcheck", "run", f"{project}_{name}_1"],
                                     capture_output=True, check=False).returncode
                      for name in ("db", "cache")]
            if checks == [0, 0]:
                break
            assert time.monotonic() < deadline, f"accessories not healthy: {checks}"
            time.sleep(1)
        answer = _get(f"http://127.0.0.1:{port}/up")
        assert answer.status_code == 200
        probe = ("import os, socket, urllib.parse as u\n"
                 "for v in ('DATABASE_URL', 'REDIS_URL'):\n"
                 "    p = u.urlsplit(os.environ[v])\n"
                 "    socket.create_connection((p.hostname, p.port), 5).close()\n"
                 "    print(v, p.hostname, p.port)\n")
        reached = subprocess.run(["podman", "exec", f"{project}_web_1", "python3", "-c", probe],
                                 capture_output=True, text=True, check=False)
        assert reached.stdout.split("\n")[:2] == ["DATABASE_URL db 5432", "REDIS_URL cache 6379"]
        password = next(line.split("=", 1)[1] for line in (app.dir / ".env").read_text()
                        .splitlines() if line.startswith("DB_PASSWORD="))
        psql = ["podman", "exec", "-e", "PGPASSWORD", f"{project}_db_1", "psql", "-h",
                "127.0.0.1", "-U", "hello", "-d", "hello", "-tAc", "select 1"]
        ok = subprocess.run(psql, env=dict(os.environ, PGPASSWORD=password),
                            capture_output=True, text=True, check=False)
        assert ok.stdout.strip() == "1", ok.stderr
        wrong = subprocess.run(psql, env=dict(os.environ, PGPASSWORD="wrong"),
                               capture_output=True, text=True, check=False)
        assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    finally:
        subprocess.run([*tool, "down", "-v", "-t", "1"], cwd=app.dir, capture_output=True,
                       timeout=120, check=False)


def _get(url: str) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.3)
