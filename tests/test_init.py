"""`headway init` on a table of small app folders modelled on real projects' layouts: the
headway.toml it writes is valid (parsed by the spec loader) and says what each app needs
(command, workers, health route, release command, accessories wired to the variables the code
reads, secrets, [env], volumes); what it cannot decide it names with the key to set. A few run
through the real CLI."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from headway.builder import pydeps
from headway.builder.detect import apps_below, detect, render_toml
from headway.builder.needs import scan
from headway.errors import ConfigError
from headway.spec.load import parse_spec
from headway.spec.models import Spec
from tests.conftest import ROOT, free_port

FASTAPI = "from fastapi import FastAPI\napp = FastAPI()\n"


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
        else:
            path.write_text(text)
    return folder


def init(folder: Path) -> tuple[Spec, str, list[str]]:
    found = detect(folder)
    needs = scan(folder, found)
    text = render_toml(found, port=8080, needs=needs)
    return parse_spec(text), text, [f"{n.text} | {n.key}" for n in needs.notes]


def acc(spec: Spec) -> dict[str, Any]:
    return {name: (a.type, a.url_env, dict(a.env)) for name, a in spec.accessories.items()}


CORPUS: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("fastapi-package-alembic", {
        "requirements.txt": "fastapi\nuvicorn[standard]\npsycopg2-binary==2.9.9\nalembic\n",
        "alembic.ini": "[alembic]\nscript_location = migrations\n",
        "app/__init__.py": "",
        "app/main.py": FASTAPI + "import os\nSECRET = os.environ['SECRET_KEY']\n"
                       "@app.get('/health')\ndef health():\n    return {}\n",
        "app/db.py": "import os\nengine_url = os.environ['DATABASE_URL']\n",
        "main.py": "from app.main import app\n",
    }, {"health": "/health", "release": "alembic upgrade head", "generated": ["SECRET_KEY"],
        "accessories": {"db": ("postgres", None, {})}}),
    ("flask-factory-procfile", {
        "requirements/base.txt": "flask\nflask-migrate\nredis\nrq\ngunicorn\n",
        "requirements.txt": "-r requirements/base.txt\n",
        "Procfile": "web: gunicorn 'app:create_app()'\nworker: rq worker --url $REDIS_URL\n"
                    "release: flask db upgrade\n",
        "app.py": "import os\nfrom flask import Flask\ndef create_app():\n    app = Flask(__name__)\n"
                  "    app.config['REDIS'] = os.environ.get('REDIS_URL')\n    return app\n",
        "migrations/env.py": "",
    }, {"command": "gunicorn 'app:create_app()' --bind $HOST:$PORT",
        "workers": {"worker": "rq worker --url $REDIS_URL"}, "release": "flask db upgrade",
        "accessories": {"cache": ("redis", None, {})}, "health": None}),
    ("flask-package-flaskenv", {
        "requirements.txt": "flask\nflask-migrate\npsycopg2-binary\ngunicorn\n",
        "Procfile": "web: gunicorn 'shop:create_app()'\nrelease: flask db upgrade\n",
        ".flaskenv": "FLASK_APP=shop\n",
        "shop/__init__.py": "from flask import Flask\ndef create_app():\n    return Flask('x')\n",
        "migrations/env.py": "",
    }, {"release": "flask db upgrade", "env": {"FLASK_APP": "shop"},
        "accessories": {"db": ("postgres", None, {})}}),
    ("flask-migrate-from-command", {
        "requirements.txt": "flask\nflask-migrate\ngunicorn\n",
        "autoapp.py": "from flask import Flask\napp = Flask(__name__)\n",
        "migrations/env.py": "",
    }, {"release": "flask db upgrade", "env": {"FLASK_APP": "autoapp:app"}}),
    ("django-database-url", {
        "requirements.txt": "Django>=5\ndj-database-url\npsycopg[binary]\ngunicorn\n",
        "manage.py": "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', "
                     "'shop.settings')\nfrom django.core.management import execute_from_command_line\n",
        "shop/__init__.py": "",
        "shop/wsgi.py": "application = None\n",
        "shop/settings.py": "import os\nimport dj_database_url\nfrom pathlib import Path\n"
                            "BASE_DIR = Path(__file__).resolve().parent.parent\n"
                            "SECRET_KEY = os.environ.get('SECRET_KEY', 'dev-insecure')\n"
                            "DEBUG = os.environ.get('DEBUG') == '1'\n"
                            "DATABASES = {'default': dj_database_url.config(default="
                            "'sqlite:///db.sqlite3')}\nMEDIA_ROOT = BASE_DIR / 'media'\n",
        "shop/urls.py": "from django.contrib import admin\nfrom django.urls import path\n"
                        "urlpatterns = [path('admin/', admin.site.urls), "
                        "path('healthz/', lambda r: None)]\n",
        "orders/urls.py": "urlpatterns = [path('status/', view)]\n",
    }, {"release": "python manage.py migrate --noinput", "health": "/healthz/",
        "generated": ["SECRET_KEY"], "accessories": {"db": ("postgres", None, {})},
        "volumes": {"media": "media"}, "command": "gunicorn --bind $HOST:$PORT shop.wsgi"}),
    ("django-procfile-secret-with-default", {
        "requirements.txt": "Django\ngunicorn\n", "manage.py": "",
        "Procfile": "web: gunicorn site.wsgi\n", "site/__init__.py": "", "site/wsgi.py": "",
        "site/settings.py": "import os\nSECRET_KEY = os.environ.get('SECRET_KEY', 'dev')\n",
    }, {"generated": ["SECRET_KEY"], "command": "gunicorn site.wsgi --bind $HOST:$PORT"}),
    ("flask-signing-key-with-fallback", {
        "requirements.txt": "flask\ngunicorn\nflask-migrate\n", "migrations/env.py": "",
        "Procfile": "web: flask db upgrade; gunicorn microblog:app\nworker: rq worker tasks\n",
        ".flaskenv": "FLASK_APP=microblog.py\n",
        "microblog.py": "from app import create_app\napp = create_app()\n",
        "config.py": "import os\nSECRET_KEY = os.environ.get('SECRET_KEY') or 'never-guess'\n"
                     "MAIL_PASSWORD = os.environ.get('MAIL_PASSWORD')\n",
    }, {"generated": ["SECRET_KEY"], "release": "flask db upgrade",
        "command": "gunicorn microblog:app --bind $HOST:$PORT",
        "env": {"FLASK_APP": "microblog.py"}}),
    ("express-knex-db-vars", {
        "package.json": '{"scripts": {"start": "node server.js"}, "dependencies": '
                        '{"express": "^4", "knex": "^3", "pg": "^8"}}',
        "knexfile.js": "module.exports = { client: 'pg', connection: { host: process.env.DB_HOST,"
                       " port: process.env.DB_PORT, user: process.env.DB_USER, password: "
                       "process.env.DB_PASSWORD, database: process.env.DB_NAME } };\n",
        "server.js": "const express = require('express');\nconst app = express();\n"
                     "app.get('/healthz', (req, res) => res.send('ok'));\n"
                     "app.listen(process.env.PORT || 3000);\n",
    }, {"command": "node server.js", "health": "/healthz", "release": "npx knex migrate:latest",
        "accessories": {"db": ("postgres", None, {
            "DB_HOST": "host", "DB_PORT": "port", "DB_USER": "user", "DB_PASSWORD": "password",
            "DB_NAME": "database"})}, "secrets": []}),
    ("express-prisma", {
        "package.json": '{"scripts": {"start": "node index.js"}, "dependencies": '
                        '{"@prisma/client": "^5", "express": "^4"}, "devDependencies": '
                        '{"prisma": "^5"}}',
        "prisma/schema.prisma": 'datasource db {\n  provider = "postgresql"\n'
                                '  url = env("DATABASE_URL")\n}\n',
        "prisma/migrations/20240101_init/migration.sql": "CREATE TABLE t (id int);\n",
        "index.js": "const app = require('express')();\napp.get('/api/health', (q, s) => "
                    "s.json({}));\napp.listen(process.env.PORT);\n",
    }, {"release": "npx prisma migrate deploy", "health": "/api/health",
        "accessories": {"db": ("postgres", None, {})}}),
    ("fastify-ioredis-parts", {
        "package.json": '{"scripts": {"start": "node app.js"}, "dependencies": '
                        '{"fastify": "^4", "ioredis": "^5"}}',
        "app.js": "const fastify = require('fastify')();\nconst Redis = require('ioredis');\n"
                  "const r = new Redis({host: process.env.REDIS_HOST, port: "
                  "process.env.REDIS_PORT});\nfastify.get('/ping', async () => 'pong');\n",
    }, {"health": "/ping", "accessories": {"cache": ("redis", None, {
        "REDIS_HOST": "host", "REDIS_PORT": "port"})}}),
    ("celery-worker-redis", {
        "requirements.txt": "flask\ncelery[redis]\ngunicorn\n",
        "app.py": "import os\nfrom flask import Flask\napp = Flask(__name__)\n"
                  "BROKER = os.environ['CELERY_BROKER_URL']\n",
        "Procfile": "web: gunicorn app:app\nworker: celery -A tasks worker --loglevel=info\n",
    }, {"accessories": {"cache": ("redis", "CELERY_BROKER_URL", {})},
        "workers": {"worker": "celery -A tasks worker --loglevel=info"}}),
    ("postgres-url-only", {
        "requirements.txt": "fastapi\nuvicorn\nasyncpg\n",
        "main.py": FASTAPI + "import os\nDSN = os.getenv('POSTGRES_URL')\n"
                   "API = os.getenv('PAYMENT_API_TOKEN', '')\n",
    }, {"accessories": {"db": ("postgres", "POSTGRES_URL", {})}, "secrets": []}),
    ("env-example-defaults", {
        "requirements.txt": "fastapi\nuvicorn\n",
        "main.py": FASTAPI + "import os\nLEVEL = os.environ['LOG_LEVEL']\n"
                   "TOKEN = os.environ['GITHUB_API_TOKEN']\n",
        ".env.example": "LOG_LEVEL=warning\nGITHUB_API_TOKEN=ghp_example_do_not_use\n"
                        "PUBLIC_URL=https://example.com\nMAX_ITEMS=50\nDEBUG=true\n",
    }, {"env": {"LOG_LEVEL": "warning", "MAX_ITEMS": "50"}, "secrets": ["GITHUB_API_TOKEN"],
        "accessories": {}}),
    ("pydantic-settings", {
        "pyproject.toml": '[project]\nname = "svc"\ndependencies = ["fastapi", "uvicorn", '
                          '"pydantic-settings", "redis>=5"]\n',
        "svc/__init__.py": "",
        "svc/config.py": "from pydantic_settings import BaseSettings\n\n"
                         "class Settings(BaseSettings):\n    redis_url: str\n"
                         "    api_key: str\n    workers: int = 2\n",
        "main.py": FASTAPI,
    }, {"secrets": ["API_KEY"], "accessories": {"cache": ("redis", None, {})}}),
    ("sqlite-in-a-folder", {
        "requirements.txt": "flask\ngunicorn\n",
        "app.py": "from flask import Flask\napp = Flask(__name__)\n"
                  "DB = 'sqlite:///data/app.db'\n@app.route('/up')\ndef up():\n    return 'ok'\n",
    }, {"volumes": {"data": "data"}, "health": "/up", "accessories": {}}),
    ("express-multer-uploads", {
        "package.json": '{"main": "index.js", "dependencies": {"express": "^4", "multer": "^1"}}',
        "index.js": "const multer = require('multer');\nconst upload = multer({ dest: "
                    "'uploads/' });\n",
    }, {"volumes": {"uploads": "uploads"}, "command": "node index.js"}),
    ("flask-log-folder-or-stdout", {  # microblog's shape: logs/ made unless LOG_TO_STDOUT
        "requirements.txt": "flask\ngunicorn\n",
        "app.py": "import os\nfrom flask import Flask\napp = Flask(__name__)\n"
                  "if os.environ.get('LOG_TO_STDOUT'):\n    pass\nelse:\n"
                  "    if not os.path.exists('logs'):\n        os.mkdir('logs')\n",
    }, {"env": {"LOG_TO_STDOUT": "1"}, "volumes": {}}),
    ("folders-made-at-run-time", {
        "package.json": '{"main": "index.js", "dependencies": {"express": "^4"}}',
        "index.js": "const fs = require('fs');\nfs.mkdirSync('./exports', { recursive: true });"
                    "\nfs.mkdirSync(tmpdir);\n",
        "worker.py": "from pathlib import Path\nPath('reports').mkdir(exist_ok=True)\n",
    }, {"volumes": {"exports": "exports", "reports": "reports"}}),
    ("express-own-port-variable-knexfile-in-src", {  # knex-express-for-backend-team's shape
        "package.json": '{"scripts": {"start": "node src/main.js"}, "dependencies": '
                        '{"express": "4", "knex": "3", "pg": "8"}}',
        "src/knexfile.js": "module.exports = {[process?.env?.APP_ENV]: {client: 'pg'}};\n",
        "src/main.js": "const app = require('express')();\napp.listen(process.env.APP_PORT);\n",
        ".env.sample": "APP_PORT=2001\nAPP_ENV=development\n"
                       "CSP=\"default-src 'self'; frame-src 'self'\"  # quoted\n",
    }, {"command": "env APP_PORT=$PORT node src/main.js",
        "release": "npx knex migrate:latest --knexfile src/knexfile.js",
        "env": {"APP_ENV": "production", "CSP": "default-src 'self'; frame-src 'self'"}}),
    ("node-pg-bare-pool", {
        "package.json": '{"main": "db.js", "dependencies": {"pg": "^8"}}',
        "db.js": "const { Pool } = require('pg');\nexport const pool = new Pool();\n",
    }, {"accessories": {"db": ("postgres", None, {
        "PGHOST": "host", "PGPORT": "port", "PGUSER": "user", "PGPASSWORD": "password",
        "PGDATABASE": "database"})}}),
    ("bun-sql", {
        "package.json": '{"scripts": {"start": "bun run src/index.ts"}, "dependencies": '
                        '{"hono": "4"}}', "bun.lock": "",
        "src/index.ts": 'import { SQL } from "bun";\nconst sql = new SQL(process.env.'
                        'DATABASE_URL!);\n',
    }, {"accessories": {"db": ("postgres", None, {})}, "secrets": []}),
    ("node-migrate-script", {
        "package.json": '{"scripts": {"start": "node server.js", "migrate": "node migrate.js"},'
                        ' "dependencies": {"pg": "^8"}}',
        "server.js": "const url = process.env.DATABASE_URL;\n",
    }, {"release": "npm run migrate", "accessories": {"db": ("postgres", None, {})}}),
    ("stdlib-script", {
        "app.py": "import os\nfrom http.server import HTTPServer\n"
                  "if __name__ == '__main__':\n    HTTPServer(('', int(os.environ['PORT'])), "
                  "None).serve_forever()\n",
    }, {"command": "python3 app.py", "health": None, "accessories": {}, "secrets": [],
        "release": None}),
    ("own-dockerfile", {
        "Dockerfile": "FROM python:3.12-slim\nCOPY . .\nCMD [\"python\", \"serve.py\"]\n",
    }, {"command": "python serve.py", "accessories": {}}),
    ("flask-key-under-its-own-name", {  # pamelafox/flask-surveys-container-app's settings
        "requirements.txt": "flask\ngunicorn\npsycopg2\n",
        "app.py": "from flask import Flask\napp = Flask(__name__)\n"
                  "app.config.from_object('settings.production')\n",
        "settings/production.py": "import os\nSECRET_KEY = os.environ['FLASKSECRET']\n"
                                  "DBHOST = os.environ['DBHOST']\n",
        "settings/development.py": "import os\nSECRET_KEY = os.environ.get('FLASKSECRET', "
                                   "'flask-insecure-7ppocbnx')\n",
        "worker.py": "import os\nfrom flask import Flask\nw = Flask(__name__)\n"
                     "w.secret_key = os.getenv('WORKER_KEY_MATERIAL')\n",
    }, {"generated": ["FLASKSECRET", "WORKER_KEY_MATERIAL"], "secrets": []}),
    ("procfile-dev-server", {
        "requirements.txt": "flask\ngunicorn\n",
        "app.py": "from flask import Flask\napp = Flask(__name__)\n",
        "Procfile": "web: flask run --debug\n",
    }, {"command": "gunicorn --bind $HOST:$PORT app:app"}),
]


def corpus(name: str) -> dict[str, str]:
    return next(files for n, files, _ in CORPUS if n == name)


@pytest.mark.parametrize(("files", "want"), [(f, w) for _, f, w in CORPUS],
                         ids=[name for name, _, _ in CORPUS])
def test_init_writes_what_the_app_needs(tmp_path: Path, files: dict[str, str],
                                        want: dict[str, Any]) -> None:
    spec, text, _ = init(write(tmp_path / "app", files))
    web = spec.processes["web"]
    if "command" in want:
        assert web.command == want["command"]
    if "health" in want:
        assert (web.health.path, web.health.expect) == (
            (want["health"], "2xx") if want["health"] else ("/", "below-500"))
    if "release" in want:
        assert spec.release.command == want["release"]
    if "accessories" in want:
        assert acc(spec) == want["accessories"]
    if "secrets" in want:
        assert spec.app.secrets == want["secrets"]
    if "generated" in want:  # signing keys: made once by the first deploy, never asked for
        assert spec.secrets == {name: "generate:50" for name in want["generated"]}
        assert not set(want["generated"]) & set(spec.app.secrets)
    if "workers" in want:
        assert {n: p.command for n, p in spec.processes.items() if n != "web"} == want["workers"]
    if "volumes" in want:
        assert dict(spec.volumes) == want["volumes"]
    if "env" in want:
        assert spec.environment("production") == want["env"]
    assert "example_do_not_use" not in text  # never a secret's value from an example file


def test_what_init_cannot_decide_is_named_with_its_key(tmp_path: Path) -> None:
    app = write(tmp_path / "api", {
        "requirements.txt": "fastapi\nuvicorn\npymysql\ncelery\n",
        "main.py": FASTAPI + "from api.routes import router\n"
                   "app.include_router(router, prefix='/v1/api')\n",
        "api/routes.py": "from fastapi import APIRouter\nrouter = APIRouter()\n"
                         "@router.get('/health')\ndef h():\n    return {}\n",
        "api/config.py": "import os\nSENTRY = os.environ['SENTRY_DSN']\n",
        "store.py": "import sqlite3\nsqlite3.connect('app.db')\n",
    })
    spec, text, notes = init(app)
    assert spec.processes["web"].health.path == "/"  # a prefixed router route is not guessed
    joined = "\n".join(notes)
    assert "/health at api/routes.py:3 is on a router" in joined
    assert "[processes.web.health] path" in joined
    assert "MySQL (pymysql" in joined and "headway secrets set DATABASE_URL" in joined
    assert "celery is a dependency" in joined and '[accessories.cache] type = "redis"' in joined
    assert 'SENTRY_DSN is read (api/config.py:2) and has no default | [env] SENTRY_DSN' in joined
    assert "SQLite file app.db" in joined and '[volumes] data = "data"' in joined
    assert '# SENTRY_DSN = ""' in text


def test_procfile_lines_are_kept_with_only_the_binding_added(tmp_path: Path) -> None:
    app = write(tmp_path / "p", {
        "requirements.txt": "fastapi\nuvicorn\n", "main.py": FASTAPI,
        "Procfile": "web: cd src && uvicorn main:app --port ${PORT:-8000}\n"
                    "clock: python clock.py\nrelease: ./bin/release.sh\n"
                    "dev_worker: nodemon worker.js\n",
    })
    spec, _, notes = init(app)
    assert spec.processes["web"].command == \
        "sh -c 'cd src && uvicorn main:app --port ${PORT:-8000}'"
    assert spec.processes["clock"].command == "python clock.py"
    assert "dev-worker" not in spec.processes
    assert any("Procfile dev-worker" in n and "dev server" in n for n in notes)
    assert spec.release.command == "./bin/release.sh"
    fixed = write(tmp_path / "q", {"requirements.txt": "", "main.py": FASTAPI,
                                   "Procfile": "web: uvicorn main:app --host 0.0.0.0 "
                                               "--port $PORT\n"})
    assert detect(fixed).command == "uvicorn main:app --host 0.0.0.0 --port $PORT"


def run_init(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headway", "init", *args], cwd=folder,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.integration  # runs the CLI
def test_the_cli_prints_what_it_found_and_what_to_set(tmp_path: Path) -> None:
    app = write(tmp_path / "shop", dict(corpus('fastapi-package-alembic')) | {
        "Procfile": "worker: python -m app.worker\n"})
    result = run_init(app)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "found:\n" in out
    assert '  [processes.web.health] path = "/health"  (app/main.py:5)' in out
    assert '  [accessories.db] type = "postgres"  (psycopg2-binary in requirements.txt); the ' \
        "app gets DATABASE_URL" in out
    assert '  [release] command = "alembic upgrade head"  (alembic.ini)' in out
    assert '  [processes.worker] command = "python -m app.worker"  (Procfile)' in out
    assert '  [secrets] SECRET_KEY = "generate:50"  (a signing key, read at ' in out
    assert out.rstrip().endswith("next: headway deploy")
    spec = parse_spec((app / "headway.toml").read_text())
    assert spec.app.name == "shop" and spec.secrets == {"SECRET_KEY": "generate:50"}
    again = run_init(app)
    assert again.returncode == 2 and "headway.toml exists" in again.stderr
    assert "--force" in again.stderr


@pytest.mark.integration  # runs the CLI
def test_the_cli_refuses_a_folder_without_an_app(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi\n")
    result = run_init(tmp_path)
    assert result.returncode == 2
    assert "no app found" in result.stderr and "Traceback" not in result.stderr
    missing = run_init(tmp_path, "--path", "nowhere")
    assert missing.returncode == 2 and "--path nowhere: no such folder" in missing.stderr


@pytest.mark.integration  # runs the CLI
def test_the_cli_on_an_express_app_with_knex(tmp_path: Path) -> None:
    app = write(tmp_path / "orders", dict(corpus('express-knex-db-vars')) | {
        ".env.example": "DB_HOST=localhost\nDB_PASSWORD=secret\nSESSION_SECRET=\nAPP_NAME=orders\n"})
    result = run_init(app)
    assert result.returncode == 0, result.stderr
    text = (app / "headway.toml").read_text()
    spec = parse_spec(text)
    assert spec.accessories["db"].env["DB_PASSWORD"] == "password"
    # a session signing key needs no value from the user: Headway makes one once
    assert spec.secrets["SESSION_SECRET"] == "generate:50" and spec.app.secrets == []
    assert spec.env == {"APP_NAME": "orders"} and "secret\"" not in text
    assert "next: headway deploy" in result.stdout


def test_lessons_from_real_projects(tmp_path: Path) -> None:
    """Each layout below made init write something wrong on a public project."""
    django = write(tmp_path / "styleguide", {
        "requirements.txt": "django\ndjango-environ\npsycopg2\ngunicorn\n",
        "manage.py": "# django\n", "config/__init__.py": "", "config/wsgi.py": "",
        "config/settings.py": "import environ\nenv = environ.Env()\n"
        "DATABASES = {'default': env.db('DATABASE_URL', default='postgres:///x')}\n"
        "SECRET_KEY = env('SECRET_KEY')\nALLOWED_HOSTS = env.list('ALLOWED_HOSTS', default=[])\n"
        "if env('STORAGE', default='local') == 's3':\n"
        "    AWS_SECRET_ACCESS_KEY = env('AWS_SECRET_ACCESS_KEY')\n",
        ".env.example": "AWS_SECRET_ACCESS_KEY=\nPYTHONBREAKPOINT=ipdb.set_trace\n",
    })
    spec, text, notes = init(django)
    assert spec.app.secrets == []  # a read under `if` is not required
    assert spec.secrets == {"SECRET_KEY": "generate:50"}
    assert "AWS_SECRET_ACCESS_KEY" in text and "PYTHONBREAKPOINT" not in spec.env
    assert not any("reads no postgres variable" in n for n in notes)  # env.db() is DATABASE_URL
    assert any(n.startswith("Django reads ALLOWED_HOSTS") for n in notes)
    nx = write(tmp_path / "realworld", {
        "package.json": '{"scripts": {"start": "node dist/main.js"}, "prisma": {"schema": '
                        '"src/prisma/schema.prisma"}, "dependencies": {"express": "4"}}',
        "src/prisma/schema.prisma": 'datasource db {\n provider = "postgresql"\n}\n',
        "src/prisma/migrations/0_init/migration.sql": "",
        "Dockerfile": "FROM node\nCOPY dist/api api\nCOPY package.json ./\nCMD [\"node\", \"api\"]\n",
    })
    spec, _, notes = init(nx)
    assert spec.release.command == "npx prisma migrate deploy --schema src/prisma/schema.prisma"
    assert any("Dockerfile copies dist/api, which the app folder does not hold" in n and
               '[build] containerfile = "generate"' in n for n in notes)


def test_implicit_reads_and_sqlite_paths_built_from_parts(tmp_path: Path) -> None:
    blog = write(tmp_path / "blog", {
        "requirements.txt": "django\ndj-database-url\npsycopg\ngunicorn\n",
        "manage.py": "# django\n", "blog/__init__.py": "", "blog/wsgi.py": "",
        "blog/settings.py": "import os\nimport dj_database_url\n"
        "SECRET_KEY = os.environ['SECRET_KEY']\n"
        "ALLOWED_HOSTS = os.environ.get('ALLOWED_HOSTS', '*').split(',')\n"
        "DATABASES = {'default': dj_database_url.config(conn_max_age=600)}\n",
    })
    spec, _, notes = init(blog)
    assert acc(spec) == {"db": ("postgres", None, {})}
    assert not any("reads no postgres variable" in n or "ALLOWED_HOSTS" in n for n in notes)
    notes_app = write(tmp_path / "notes", {
        "requirements.txt": "flask\ngunicorn\n",
        "app.py": "import os\nfrom flask import Flask\napp = Flask(__name__)\n"
                  "DATABASE = os.path.join(os.path.dirname(__file__), 'data', 'notes.db')\n",
        "data/.gitkeep": "",
    })
    spec, _, _ = init(notes_app)
    assert dict(spec.volumes) == {"data": "data"}


def test_settings_classes_and_secret_names(tmp_path: Path) -> None:
    app = write(tmp_path / "backend", {
        "pyproject.toml": '[project]\nname = "b"\ndependencies = ["fastapi", "uvicorn", '
                          '"psycopg"]\n',
        "app/__init__.py": "", "app/main.py": FASTAPI,
        "app/config.py": "from pydantic_settings import BaseSettings\n\n"
        "class Settings(BaseSettings):\n    SECRET_KEY: str\n    PROJECT_NAME: str\n"
        "    DATABASE_URL: PostgresDsn\n    ACCESS_TOKEN_EXPIRE_MINUTES: int = 60\n"
        "    SMTP_PASSWORD: str | None\n\n    def check(self, value: str) -> None:\n"
        "        if value:\n            pass\n        else:\n            other: int = 1\n",
    })
    spec, text, notes = init(app)
    assert spec.secrets == {"SECRET_KEY": "generate:50"} and spec.app.secrets == []
    assert acc(spec) == {"db": ("postgres", None, {})}
    assert any(n.startswith("PROJECT_NAME is read (app/config.py:5)") for n in notes)
    assert "SMTP_PASSWORD" in text and "ELSE" not in text and "OTHER" not in text
    assert "ACCESS_TOKEN_EXPIRE_MINUTES" in text.split("[env]")[1]  # not a secret


@pytest.mark.integration  # runs the CLI
def test_without_a_web_command_init_writes_the_rest_and_exits_2(tmp_path: Path) -> None:
    app = write(tmp_path / "inventory", {
        "pyproject.toml": '[project]\nname = "inventory"\ndependencies = ["aiohttp", '
                          '"asyncpg"]\n',
        "src/inventory/__init__.py": "",
        "src/inventory/db.py": "import os\nURL = os.environ['DATABASE_URL']\n",
    })
    result = run_init(app)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "headway.toml is written, but the web command could not be decided" in result.stderr
    assert '[processes.web] command = "..."' in result.stderr
    spec = parse_spec((app / "headway.toml").read_text())
    assert "set [processes.web] command" in spec.processes["web"].command
    assert acc(spec) == {"db": ("postgres", None, {})}


def test_alembic_ini_with_its_own_server_is_named(tmp_path: Path) -> None:
    files = {"requirements.txt": "fastapi\nuvicorn\nasyncpg\nsqlmodel\nalembic\n",
             "main.py": FASTAPI,
             "alembic.ini": "[alembic]\nscript_location = migrations\n"
                            "sqlalchemy.url = postgresql+asyncpg://u:p@db:5432/foo\n",
             "migrations/env.py": "url = config.get_main_option('sqlalchemy.url')\n"}
    _, _, notes = init(write(tmp_path / "a", files))
    assert any(n.startswith("alembic.ini names its own server (db)") for n in notes)
    assert any(n.startswith("SQLAlchemy with asyncpg wants a postgresql+asyncpg:// URL")
               for n in notes)
    files["migrations/env.py"] += "import os\nconfig.set_main_option('sqlalchemy.url', " \
        "os.environ['DATABASE_URL'])\n"
    _, _, notes = init(write(tmp_path / "b", files))
    assert not any("alembic.ini names its own server" in n for n in notes)


def test_an_unused_production_settings_module_is_named(tmp_path: Path) -> None:
    app = write(tmp_path / "site", {
        "requirements.txt": "django\ngunicorn\n",
        "manage.py": "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', "
                     "'config.django.base')\n",
        "config/__init__.py": "", "config/wsgi.py": "", "config/django/__init__.py": "",
        "config/django/base.py": "DEBUG = True\n", "config/django/production.py": "DEBUG = False\n",
    })
    _, _, notes = init(app)
    assert 'the code defaults to settings config.django.base; config.django.production exists ' \
        'and is not used unless DJANGO_SETTINGS_MODULE says so | [env] DJANGO_SETTINGS_MODULE ' \
        '= "config.django.production"' in notes


@pytest.mark.parametrize(("files", "path"), [
    ({"src/health.controller.ts": "@Controller('health')\nexport class H {\n  @Get()\n"
      "  check() {}\n}\n", "src/main.ts": "app.setGlobalPrefix('api');\n"}, "/api/health"),
    ({"app/api/healthz/route.ts": "export async function GET() {}\n"}, "/api/healthz"),
    ({"pages/api/ping.ts": "export default function h() {}\n"}, "/api/ping"),
    ({"server.js": "const api = express.Router();\napi.get('/status', h);\n"
                   "app.use('/v1', api);\napp.get('/_health', h);\n"}, "/_health"),
    ({"server.js": "const api = express.Router();\napi.get('/health', h);\n"
                   "app.use('/v1', api);\n"}, "/"),  # under a prefix: not guessed
    ({"server.js": "app.get('/users/:id/status', h);\napp.get('/orders/status', h);\n"}, "/"),
])
def test_node_health_routes(tmp_path: Path, files: dict[str, str], path: str) -> None:
    app = write(tmp_path / "n", {"package.json": '{"scripts": {"start": "node server.js"}}',
                                 **files})
    spec, _, _ = init(app)
    assert spec.processes["web"].health.path == path


# apps that start their own server: `python -m pkg` and console scripts -------------------
SERVE = ("import os\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\n\n\n"
         "class Hi(BaseHTTPRequestHandler):\n    def do_GET(self):\n"
         "        self.send_response(200)\n        self.end_headers()\n"
         "        self.wfile.write(b'hi from ' + __name__.encode())\n\n\n"
         "def run():\n    HTTPServer(('127.0.0.1', int(os.environ['PORT'])), Hi)"
         ".serve_forever()\n")
CLI = "import sys\n\n\ndef main():\n    print(sys.argv)\n"


def test_a_src_package_run_as_a_module_is_the_web_command(tmp_path: Path) -> None:
    app = write(tmp_path / "inv", {
        name: (ROOT / "tests/corpus/aiohttp-inventory" / name).read_text()
        for name in ("pyproject.toml", "src/inventory/__init__.py", "src/inventory/app.py",
                     "src/inventory/__main__.py")})
    spec, _, _ = init(app)
    assert spec.processes["web"].command == "env PYTHONPATH=src python3 -m inventory"
    assert spec.processes["web"].health.path == "/ping"
    assert acc(spec) == {"db": ("postgres", None, {})}
    assert "starts its server at src/inventory/app.py:43" in detect(app).explain
    configured = detect(app, command="python3 -m inventory.other")  # headway.toml wins
    assert configured.command == "python3 -m inventory.other"


@pytest.mark.parametrize(("files", "command"), [
    ({"requirements.txt": "aiohttp\n", "shop/__init__.py": "",
      "shop/__main__.py": "from .server import serve\n\nif __name__ == '__main__':\n    serve()\n",
      "shop/server.py": "import os\nfrom aiohttp import web\n\n\ndef serve():\n"
                        "    web.run_app(web.Application(), port=int(os.environ['PORT']))\n"},
     "python3 -m shop"),
    ({"pyproject.toml": '[project]\nname = "inv"\ndependencies = ["aiohttp"]\n'
                        '[project.scripts]\ninv-admin = "inv.cli:main"\n'
                        'inventory = "inv.main:run"\n',
      "src/inv/__init__.py": "", "src/inv/cli.py": CLI, "src/inv/main.py": SERVE},
     "env PYTHONPATH=src python3 -c 'import sys; from inv.main import run; sys.exit(run())'"),
    ({"pyproject.toml": '[tool.poetry]\nname = "inv"\n[tool.poetry.dependencies]\n'
                        'python = "^3.11"\n[tool.poetry.scripts]\n'
                        'serve = { callable = "inv:start" }\n',
      "poetry.lock": "", "inv/__init__.py": "from inv import web\n\n\ndef start():\n"
                                            "    web.go()\n",
      "inv/web.py": "import os\nimport uvicorn\n\n\ndef go():\n"
                    "    uvicorn.run('inv.api:app', port=int(os.environ['PORT']))\n"},
     "python3 -c 'import sys; from inv import start; sys.exit(start())'"),
    ({"requirements.txt": "flask\n", "blog/__init__.py": "from flask import Flask\n"
                                                        "app = Flask(__name__)\n",
      "blog/__main__.py": "import os\nfrom blog import app\n"
                          "app.run(host='0.0.0.0', port=int(os.environ['PORT']))\n"},
     "python3 -m blog"),  # no production server in the dependencies: the app's own
])
def test_a_module_or_console_script_that_starts_the_server(
        tmp_path: Path, files: dict[str, str], command: str) -> None:
    assert detect(write(tmp_path / "a", files)).command == command


def test_a_console_script_that_starts_no_server_is_not_the_web_command(tmp_path: Path) -> None:
    app = write(tmp_path / "a", {
        "pyproject.toml": '[project]\nname = "inv"\ndependencies = []\n'
                          '[project.scripts]\ninv = "inv.cli:main"\n',
        "inv/__init__.py": "", "inv/cli.py": CLI,
        "inv/__main__.py": "import asyncio\nfrom inv.cli import main\nasyncio.run(main())\n"})
    found = detect(app, partial=True)
    assert found.command == ""
    assert "PKG/__main__.py, [project.scripts]" in found.explain


@pytest.mark.integration  # starts the app's server
@pytest.mark.parametrize("layout", ["module", "script"])
def test_the_detected_command_runs_from_the_apps_folder_without_installing_it(
        tmp_path: Path, layout: str) -> None:
    files = {"pyproject.toml": '[project]\nname = "hi"\ndependencies = []\n'
                               '[project.scripts]\nhi = "hi.web:run"\n',
             "src/hi/__init__.py": "", "src/hi/web.py": SERVE}
    if layout == "module":
        files["src/hi/__main__.py"] = "from hi.web import run\n\nrun()\n"
    app = write(tmp_path / "a", files)
    port = free_port()
    argv = shlex.split(detect(app).command)
    server = subprocess.Popen(argv, cwd=app, env={"PATH": os.environ["PATH"], "PORT": str(port)})
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text == "hi from hi.web"
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
    finally:
        server.kill()
        server.wait()


@pytest.mark.integration  # runs the CLI
def test_init_at_the_top_of_a_repository_finds_the_app_in_its_folder(tmp_path: Path) -> None:
    # testdrivenio/django-on-docker: the app in app/, beside nginx/ (a Dockerfile only), its
    # production example env at the top, its database settings named SQL_*
    top = write(tmp_path / "shop", {
        "nginx/Dockerfile": "FROM nginx\n",
        ".env.prod-sample": "SQL_ENGINE=django.db.backends.postgresql\nSQL_HOST=db\n"
                            "DJANGO_ALLOWED_HOSTS=localhost 127.0.0.1\n",
        "app/requirements.txt": "Django==4.2\ngunicorn\npsycopg2-binary\n",
        "app/manage.py": "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'shop.settings')\n",
        "app/shop/__init__.py": "", "app/shop/wsgi.py": "application = None\n",
        "app/shop/settings.py": "import os\nENGINE = os.environ.get('SQL_ENGINE')\n"
        "HOST = os.environ.get('SQL_HOST')\nPASSWORD = os.environ.get('SQL_PASSWORD')\n"
        "ALLOWED_HOSTS = os.environ.get('DJANGO_ALLOWED_HOSTS').split(' ')\n"})
    result = run_init(top)
    assert result.returncode == 0, result.stderr
    spec = parse_spec((top / "headway.toml").read_text())
    assert spec.app.path == "app" and spec.app.name == "shop"
    assert spec.processes["web"].command == "gunicorn --bind $HOST:$PORT shop.wsgi"
    assert spec.accessories["db"].env == {"SQL_HOST": "host", "SQL_PASSWORD": "password"}
    assert spec.env["SQL_ENGINE"] == "django.db.backends.postgresql"
    assert spec.env["DJANGO_ALLOWED_HOSTS"] == "localhost 127.0.0.1"


@pytest.mark.integration  # runs the CLI
def test_init_names_the_app_folders_when_a_repository_has_several(tmp_path: Path) -> None:
    top = write(tmp_path / "mono", {"api/requirements.txt": "flask\n",
                                    "web/package.json": "{}", "web/index.js": ""})
    result = run_init(top)
    assert result.returncode == 2 and "several below it (api/, web/)" in result.stderr
    assert "headway init --path api" in result.stderr and not (top / "headway.toml").exists()


def test_database_variables_named_by_the_apps_own_files(tmp_path: Path) -> None:
    """Public samples: DBHOST/DBUSER/DBPASS/DBNAME with no port (the app connects to 5432),
    a cache LOCATION and a connection variable whose names say nothing but whose values in
    the app's .env or compose file are database URLs."""
    django = write(tmp_path / "reviews", {
        "requirements.txt": "Django\npsycopg2-binary\ndjango-redis\ngunicorn\n",
        "manage.py": "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site.settings')\n",
        "site/__init__.py": "", "site/wsgi.py": "",
        "site/settings.py": "import os\nDATABASES = {'default': {"
        "'ENGINE': 'django.db.backends.postgresql', 'NAME': os.environ.get('DBNAME'), "
        "'HOST': os.environ.get('DBHOST'), 'USER': os.environ.get('DBUSER'), "
        "'PASSWORD': os.environ.get('DBPASS')}}\nCACHES = {'default': {'BACKEND': "
        "'django_redis.cache.RedisCache', 'LOCATION': os.environ.get('CACHELOCATION')}}\n",
        ".env": "DBNAME=app\nDBHOST=localhost\nCACHELOCATION=redis://redis:6379/0\n",
    })
    spec, _, notes = init(django)
    assert acc(spec) == {
        "db": ("postgres", None, {"DBHOST": "host", "DBUSER": "user", "DBPASS": "password",
                                  "DBNAME": "database"}),
        "cache": ("redis", "CACHELOCATION", {})}
    assert spec.accessories["db"].port == 5432 and spec.accessories["cache"].port == 0
    assert not any("reads no" in n for n in notes)
    todo = write(tmp_path / "todo", {
        "package.json": '{"scripts": {"start": "node server.js"}, "dependencies": '
                        '{"express": "4", "pg-promise": "11", "bullmq": "3"}}',
        "server.js": "const express = require('express');\nconst app = express();\n"
                     "app.listen(process.env.PORT);\n",
        "config/production.js": "module.exports = {PG: process.env.PG_CONNECTION, "
        "ADMIN: process.env.TODO_ADMIN_DB, REDIS_HOST: process.env.REDIS_HOST};\n",
        "docker-compose.yml": "services:\n  api:\n    environment:\n"
        "      PG_CONNECTION: postgres://u:p@db:5432/todo\n"
        "      TODO_ADMIN_DB: 'postgres://root:p@db:5432/postgres'\n      REDIS_HOST: redis\n",
    })
    spec, _, notes = init(todo)
    assert acc(spec) == {"db": ("postgres", "PG_CONNECTION", {"TODO_ADMIN_DB": "url"}),
                         "cache": ("redis", None, {"REDIS_HOST": "host"})}
    assert spec.accessories["cache"].port == 6379 and spec.accessories["db"].port == 0


def test_asyncpg_beside_a_sync_engine_wants_no_url_change(tmp_path: Path) -> None:
    """fastapi-crud-async's shape: `databases` runs on asyncpg and SQLAlchemy's engine is the
    sync one; both take postgresql:// as it is."""
    files = {"requirements.txt": "databases[postgresql]\npsycopg2-binary\nSQLAlchemy\nasyncpg\n"
                                 "fastapi\nuvicorn\n",
             "app/__init__.py": "", "app/main.py": FASTAPI,
             "app/db.py": "import os\nfrom sqlalchemy import create_engine\n"
                          "from databases import Database\nURL = os.getenv('DATABASE_URL')\n"
                          "engine = create_engine(URL)\ndatabase = Database(URL)\n"}
    _, _, notes = init(write(tmp_path / "sync", files))
    assert not any("postgresql+asyncpg" in n for n in notes)
    files["app/db.py"] = files["app/db.py"].replace("create_engine", "create_async_engine")
    _, _, notes = init(write(tmp_path / "async", files))
    assert any(n.startswith("SQLAlchemy with asyncpg wants") for n in notes)


def test_a_router_the_app_includes_with_no_prefix_gives_a_sure_health_route(
        tmp_path: Path) -> None:
    """fastapi-crud-async's shape: one router mounted as is, another under a prefix."""
    files = {"requirements.txt": "fastapi\nuvicorn\n",
             "app/__init__.py": "", "app/api/__init__.py": "",
             "app/main.py": FASTAPI + "from app.api import notes, ping\n"
             "app.include_router(ping.router)\n"
             "app.include_router(notes.router, prefix='/notes', tags=['notes'])\n",
             "app/api/ping.py": "from fastapi import APIRouter\nrouter = APIRouter()\n\n"
             "@router.get('/ping')\nasync def pong():\n    return {}\n",
             "app/api/notes.py": "from fastapi import APIRouter\nrouter = APIRouter()\n\n"
             "@router.get('/health')\nasync def h():\n    return {}\n"}
    spec, _, _ = init(write(tmp_path / "a", files))
    assert spec.processes["web"].health.path == "/ping"
    files["app/main.py"] = FASTAPI + "from app.api.ping import router as ping_router\n" \
        "from app.api import notes\napp.include_router(ping_router)\n" \
        "app.include_router(notes.router, prefix='/notes')\n"
    spec, _, _ = init(write(tmp_path / "b", files))
    assert spec.processes["web"].health.path == "/ping"
    files["app/api/ping.py"] = files["app/api/ping.py"].replace("APIRouter()",
                                                                "APIRouter(prefix='/v1')")
    spec, _, notes = init(write(tmp_path / "c", files))
    assert spec.processes["web"].health.path == "/"
    assert any("is on a router that may be mounted under a prefix" in n for n in notes)


def test_a_compose_service_that_migrates_is_the_release_command(tmp_path: Path) -> None:
    """node-express-postgres-docker-todo's shape: a `db-migration` service built from the
    app, its argument a path under the app's bind mount in the container."""
    files = {"package.json": '{"scripts": {"start": "node server.js"}, "dependencies": '
                             '{"express": "4", "pg-promise": "11"}}',
             "server.js": "const app = require('express')();\napp.listen(process.env.PORT);\n",
             "db/run-migration.js": "",
             "docker-compose.yml": "services:\n  api:\n    build: .\n    command: ['npm', 'start']\n"
             "  db-migration:\n    build:\n      context: .\n"
             "    command: ['node', './db/run-migration.js', '/usr/src/app/db/patches']\n"
             "    volumes:\n      - .:/usr/src/app\n  db:\n    image: postgres\n"}
    spec, _, _ = init(write(tmp_path / "a", files))
    assert spec.release.command == "node ./db/run-migration.js db/patches"
    files["docker-compose.yml"] = files["docker-compose.yml"].replace("      - .:/usr/src/app\n",
                                                                      "")
    spec, _, _ = init(write(tmp_path / "b", files))  # a path the app's folder does not map
    assert spec.release.command is None


def test_tortoise_apps_made_in_a_factory_with_aerich(tmp_path: Path) -> None:
    """fastapi-tdd-docker's shape: the app made inside a factory function includes the ping
    router as is; aerich (with [tool.aerich]) migrates."""
    files = {"requirements.txt": "fastapi\nuvicorn\nasyncpg\ntortoise-orm\naerich\n",
             "pyproject.toml": '[tool.aerich]\ntortoise_orm = "app.db.TORTOISE_ORM"\n'
                               'location = "./migrations"\n',
             "app/__init__.py": "", "app/api/__init__.py": "",
             "app/main.py": "from fastapi import FastAPI\nfrom app.api import ping, items\n\n"
             "def create_application() -> FastAPI:\n    application = FastAPI()\n"
             "    application.include_router(ping.router)\n"
             "    application.include_router(items.router, prefix='/items')\n"
             "    return application\n\napp = create_application()\n",
             "app/api/ping.py": "from fastapi import APIRouter\nrouter = APIRouter()\n\n"
             "@router.get('/ping')\nasync def pong():\n    return {}\n",
             "app/api/items.py": "from fastapi import APIRouter\nrouter = APIRouter()\n"}
    spec, _, _ = init(write(tmp_path / "a", files))
    assert spec.processes["web"].health.path == "/ping"
    assert spec.release.command == "aerich upgrade"
    assert spec.accessories["db"].scheme == "postgres"  # Tortoise knows no postgresql://
    from headway.accessories.servers import Accessory, Postgres
    from headway.secrets.vault import Secret
    url = Postgres().url(Accessory("a", "production", "db", spec.accessories["db"], 5433,
                                   tmp_path), Secret("pw"))
    assert url == "postgres://a:pw@127.0.0.1:5433/a"


def test_a_settings_module_picked_only_on_another_platform_asks_for_nothing(
        tmp_path: Path) -> None:
    """msdocs-django-postgresql-sample-app's shape: wsgi.py picks production.py only when
    Azure's WEBSITE_HOSTNAME is set; what production.py reads is Azure's, not a must-set."""
    app = write(tmp_path / "reviews", {
        "requirements.txt": "Django\npsycopg2-binary\ngunicorn\n",
        "manage.py": "import os\nsettings_module = 'site.production' if 'WEBSITE_HOSTNAME' in "
                     "os.environ else 'site.settings'\n"
                     "os.environ.setdefault('DJANGO_SETTINGS_MODULE', settings_module)\n",
        "site/__init__.py": "", "site/wsgi.py": "",
        "site/settings.py": "import os\nSECRET_KEY = os.getenv('SECRET_KEY')\n"
                            "DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql',"
                            " 'HOST': os.environ.get('DBHOST')}}\n",
        "site/production.py": "import os\nfrom .settings import *\nALLOWED_HOSTS = "
                              "[os.environ['WEBSITE_HOSTNAME']]\nDATABASES = {'default': "
                              "{'PASSWORD': os.environ['AZURE_POSTGRESQL_PASSWORD'], "
                              "'HOST': os.environ['AZURE_POSTGRESQL_HOST']}}\n",
    })
    spec, text, notes = init(app)
    assert spec.app.secrets == [] and "WEBSITE_HOSTNAME" not in text
    assert not any("AZURE_POSTGRESQL" in n for n in notes)
    assert "AZURE_POSTGRESQL_HOST" in text  # listed as optional, for the reader


def test_a_driver_scheme_the_apps_compose_gives_its_url_is_the_accessorys(
        tmp_path: Path) -> None:
    """fastapi-sqlmodel-alembic's shape: the engine takes DATABASE_URL as it is, and the
    app's compose file gives it postgresql+asyncpg://; the accessory's URL gets that scheme."""
    files = {"requirements.txt": "fastapi\nuvicorn\nsqlmodel\nasyncpg\n",
             "app/__init__.py": "",
             "app/db.py": "import os\nfrom sqlmodel import create_engine\nfrom sqlmodel.ext."
                          "asyncio.session import AsyncEngine\nengine = AsyncEngine(create_"
                          "engine(os.environ.get('DATABASE_URL')))\n",
             "app/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
             "docker-compose.yml": "services:\n  web:\n    build: .\n    environment:\n"
                                   "      - DATABASE_URL=postgresql+asyncpg://u:p@db:5432/foo\n"}
    spec, _, notes = init(write(tmp_path / "a", files))
    assert spec.accessories["db"].scheme == "postgresql+asyncpg"
    assert not any("asyncpg://" in n for n in notes)
    files["docker-compose.yml"] = files["docker-compose.yml"].replace("+asyncpg", "")
    spec, _, notes = init(write(tmp_path / "b", files))  # no driver named: a note, as before
    assert spec.accessories["db"].scheme is None
    assert any("wants a postgresql+asyncpg:// URL" in n for n in notes)


def test_an_app_in_src_below_a_tooling_pyproject_with_its_startup_scripts_migration(
        tmp_path: Path) -> None:
    """azure-flask-postgres-flexible-appservice's shape: the top pyproject.toml configures
    ruff only; src/ holds requirements.txt (gunicorn alone) and a pyproject.toml whose
    [project] lists the rest, and entrypoint.sh migrates with its own flags."""
    top = write(tmp_path / "repo", {
        "pyproject.toml": "[tool.ruff]\nline-length = 120\n",
        "requirements-dev.txt": "-r src/requirements.txt\npytest\n",
        "src/requirements.txt": "# global requirements\ngunicorn==22.0.0\n",
        "src/pyproject.toml": '[project]\nname = "flaskapp"\nversion = "1"\ndependencies = '
                              '["Flask==2.3.2", "Flask-Migrate==4.0.4", "psycopg2-binary"]\n'
                              '[build-system]\nrequires = ["flit_core<4"]\n'
                              'build-backend = "flit_core.buildapi"\n',
        "src/flaskapp/__init__.py": "from flask import Flask\n\ndef create_app():\n"
                                    "    return Flask(__name__)\n",
        "src/flaskapp/migrations/env.py": "",
        "src/entrypoint.sh": "#!/bin/bash\nset -e\npython3 -m pip install -e .\npython3 -m "
                             "flask --app flaskapp db upgrade --directory flaskapp/migrations\n"
                             "python3 -m flask --app flaskapp seed --filename=\"seed_data.json\""
                             "\npython3 -m gunicorn \"flaskapp:create_app()\"\n"})
    with pytest.raises(ConfigError):
        detect(top)  # no app at the top: `headway init` looks in the folders below
    assert apps_below(top) == [top / "src"]
    spec, _, _ = init(top / "src")
    assert spec.release.command == ("sh -c 'python3 -m flask --app flaskapp db upgrade "
                                    "--directory flaskapp/migrations && python3 -m flask --app "
                                    'flaskapp seed --filename="seed_data.json"\'')
    deps = pydeps.dependencies(top / "src")
    assert deps.generated == ("gunicorn==22.0.0", "Flask==2.3.2", "Flask-Migrate==4.0.4",
                              "psycopg2-binary")
    assert "pyproject.toml [project] dependencies" in deps.source
    write(top / "src", {"requirements.txt": "-e .\ngunicorn\n"})  # installs the project: as is
    assert pydeps.dependencies(top / "src").generated is None
    # azure-fastapi-postgres-flexible-aca: a script of the app makes the tables and seeds them
    # (its package is not installed: run as a module, it imports itself from the app folder)
    write(top / "src", {"entrypoint.sh": "#!/bin/bash\npython3 -m pip install -e .\npython3 "
                        "fastapi_app/seed_data.py\npython3 -m gunicorn fastapi_app:app\n",
                        "fastapi_app/__init__.py": "", "fastapi_app/seed_data.py": ""})
    assert init(top / "src")[0].release.command == "python3 -m fastapi_app.seed_data"


def test_a_procfile_step_that_loads_data_is_released_not_built() -> None:
    """`manage.py loaddata` or a seed before the server needs the database: it goes to the
    release command with the migration (a build has no database); collectstatic stays a build
    step."""
    from headway.builder.detect import split_web
    line = ("python manage.py migrate && python manage.py loaddata seed.json && python manage.py"
            " collectstatic --noinput && gunicorn site.wsgi")
    assert split_web(line) == ("gunicorn site.wsgi", [
        "python manage.py migrate", "python manage.py loaddata seed.json"],
        ["python manage.py collectstatic --noinput"])
    assert split_web("flask db upgrade; flask --app web seed; gunicorn web:app")[1] == [
        "flask db upgrade", "flask --app web seed"]


def test_a_knexfiles_development_database_is_not_asked_for(tmp_path: Path) -> None:
    # gaganssingh/express-postgresql-knex-demo: knexfile keyed by NODE_ENV, production on
    # DATABASE_URL; its development block's DEV_DATABASE_URL is never read by a deploy
    app = write(tmp_path / "api", {
        "package.json": '{"scripts": {"start": "node src/index.js"}, '
                        '"dependencies": {"express": "^4", "knex": "^0.95", "pg": "^8"}}',
        "knexfile.js": "module.exports = {\n  development: {\n    client: 'pg',\n    connection: "
                       "{ connectionString: process.env.DEV_DATABASE_URL },\n  },\n  production: "
                       "{\n    client: 'pg',\n    connection: { connectionString: "
                       "process.env.DATABASE_URL },\n  },\n};\n",
        "src/index.js": "const app = require('express')();\napp.listen(process.env.PORT);\n"
                        "const test = process.env.TEST_ONLY_IN_CODE;\n",
    })
    spec, _, notes = init(app)
    joined = "\n".join(notes)
    assert "DEV_DATABASE_URL" not in joined
    assert "TEST_ONLY_IN_CODE is read" in joined  # read outside a knexfile block: still asked
    assert acc(spec) == {"db": ("postgres", None, {})}


def test_reads_behind_an_in_os_environ_check_are_optional(tmp_path: Path) -> None:
    # Azure-Samples/azure-voting-app-redis: `if ("VOTE1VALUE" in os.environ and
    # os.environ['VOTE1VALUE'])`, and REDIS_PWD read on a call's continuation line inside
    # `if "REDIS_PWD" in os.environ:` were asked for (REDIS_PWD as a must-set secret)
    app = write(tmp_path / "vote", {
        "requirements.txt": "flask\ngunicorn\n",
        "main.py": "import os\nfrom flask import Flask\napp = Flask(__name__)\n"
                   "if (\"VOTE1VALUE\" in os.environ and os.environ['VOTE1VALUE']):\n"
                   "    button1 = os.environ['VOTE1VALUE']\nelse:\n    button1 = 'Cats'\n"
                   "server = os.environ['REDIS']\ntry:\n    if \"REDIS_PWD\" in os.environ:\n"
                   "        r = connect(host=server,\n                    port=6379,\n"
                   "                    password=os.environ['REDIS_PWD'])\n"
                   "except OSError:\n    pass\n",
    })
    spec, _, notes = init(app)
    joined = "\n".join(notes)
    assert spec.app.secrets == []
    assert "VOTE1VALUE" not in joined and "REDIS_PWD" not in joined
    assert "REDIS is read (main.py:8) and has no default" in joined
