"""Detection for `headway init` and `headway build`, table-driven over small app folders."""

import json
from pathlib import Path

import pytest

from headway.builder import image
from headway.builder.containerfile import render
from headway.builder.detect import app_name, bind_host, detect, procfile, split_web
from headway.builder.migrations import candidates
from headway.builder.needs import scan
from headway.errors import ConfigError
from headway.spec.load import parse_spec

MAIN = "if __name__ == '__main__':\n    serve()\n"


def folder(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(("files", "command"), [
    ({"main.py": "from fastapi import FastAPI\napi = FastAPI()\n"},
     "uvicorn main:api --host $HOST --port $PORT"),
    ({"app.py": "from flask import Flask\napp = Flask(__name__)\n"},
     "gunicorn --bind $HOST:$PORT app:app"),
    ({"manage.py": "", "shop/wsgi.py": "application = None\n"},
     "gunicorn --bind $HOST:$PORT shop.wsgi"),
    ({"server.py": "if __name__ == '__main__':\n    serve()\n"}, "python3 server.py"),
    # a package whose app a function builds (nsidnev/fastapi-realworld-example-app's layout)
    ({"app/__init__.py": "", "app/main.py": "from fastapi import FastAPI\n\n"
      "def get_application() -> FastAPI:\n    return FastAPI()\n\napp = get_application()\n",
      "requirements.txt": "uvicorn\n"}, "uvicorn app.main:app --host $HOST --port $PORT"),
    ({"package.json": '{"scripts": {"start": "node server.js"}}'}, "node server.js"),
    ({"package.json": '{"scripts": {"start": "next start"}}', "pnpm-lock.yaml": ""},
     "npm run start"),  # npm runs scripts for every Node installer (it is in every image)
    ({"package.json": '{"main": "src/app.js"}', "yarn.lock": ""}, "node src/app.js"),
    ({"package.json": "{}", "index.js": ""}, "node index.js"),
    # start is nodemon; the production script's cross-env is a dev dependency, not needed
    ({"package.json": '{"scripts": {"start": "nodemon x.js", "production": '
      '"cross-env NODE_ENV=production node ./api/api.js"}}'}, "node ./api/api.js"),
    ({"package.json": '{"scripts": {"start": "bun src/index.ts"}}', "bun.lockb": ""},
     "bun src/index.ts"),
])
def test_detects_the_command(tmp_path: Path, files: dict[str, str], command: str) -> None:
    assert detect(folder(tmp_path, files)).command == command


@pytest.mark.parametrize(("files", "language", "version", "installer"), [
    ({"app.py": MAIN, "requirements.txt": "", ".python-version": "3.11.7\n"},
     "python", "3.11", "pip"),
    ({"app.py": MAIN, "pyproject.toml": 'requires-python = ">=3.10"', "uv.lock": ""},
     "python", "3.10", "uv"),
    ({"app.py": MAIN, "pyproject.toml": "", "poetry.lock": ""}, "python", "3.12", "poetry"),
    ({"app.py": MAIN, "Pipfile": ""}, "python", "3.12", "pipenv"),
    ({"package.json": '{"engines": {"node": "20.x"}}', "index.js": ""}, "node", "20", "npm"),
    ({"package.json": "{}", "index.js": "", ".nvmrc": "v18.19.0"}, "node", "18", "npm"),
    ({"package.json": "{}", "index.js": ""}, "node", "22", "npm"),
    # nothing declared but the app's own image (psycopg2-binary 2.9.6 has no 3.12 wheel)
    ({"app.py": MAIN, "requirements.txt": "", "Dockerfile": "FROM python:3.11.4-slim-buster\n"},
     "python", "3.11", "pip"),
    ({"package.json": "{}", "index.js": "", "bun.lock": ""}, "bun", "1", "bun"),
])
def test_detects_runtime_version_and_installer(tmp_path: Path, files: dict[str, str],
                                               language: str, version: str,
                                               installer: str) -> None:
    found = detect(folder(tmp_path, files))
    assert (found.language, found.version, found.installer) == (language, version, installer)


def test_an_existing_containerfile_is_used_as_is(tmp_path: Path) -> None:
    found = detect(folder(tmp_path, {"Dockerfile": "FROM scratch\n", "app.py": MAIN,
                                     "requirements.txt": ""}))
    assert found.containerfile == "Dockerfile"
    assert "Dockerfile found: built as is" in found.reasons[-1]
    only = detect(folder(tmp_path / "x", {"Containerfile": "FROM scratch\n"}))
    assert (only.language, only.containerfile) == ("container", "Containerfile")


def test_unknown_layout_says_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(ConfigError) as err:
        detect(tmp_path)
    assert "looked for package.json, requirements.txt" in err.value.message
    assert "Containerfile, Dockerfile" in err.value.message
    assert "[processes.web] command" in (err.value.hint or "")
    (tmp_path / "package.json").write_text('{"name": "x"}')
    with pytest.raises(ConfigError) as err:
        detect(tmp_path)
    assert "no start script, no main, no index.js" in err.value.message


@pytest.mark.parametrize(("line", "command"), [
    ("gunicorn app:app", "gunicorn app:app --bind $HOST:$PORT"),
    ("gunicorn -b 0.0.0.0:$PORT app:app", "gunicorn -b 0.0.0.0:$PORT app:app"),
    ("gunicorn -b0.0.0.0:$PORT app:app", "gunicorn -b0.0.0.0:$PORT app:app"),
    ("uvicorn main:app --port $PORT", "uvicorn main:app --port $PORT --host $HOST"),
    ("uvicorn main:app", "uvicorn main:app --host $HOST --port $PORT"),
    ("python -m uvicorn main:app --host=0.0.0.0 --port=$PORT",
     "python -m uvicorn main:app --host=0.0.0.0 --port=$PORT"),
    ("hypercorn main:app", "hypercorn main:app --bind $HOST:$PORT"),
    ("daphne proj.asgi:application", "daphne proj.asgi:application -b $HOST -p $PORT"),
    ("daphne -p $PORT proj.asgi:application", "daphne -p $PORT proj.asgi:application -b $HOST"),
    ("waitress-serve --port=$PORT app:app", "waitress-serve --port=$PORT app:app --host=$HOST"),
    ("granian --interface asgi main:app", ("granian --interface asgi main:app --host $HOST "
     "--port $PORT")),
    ("node server.js", "node server.js"),
    ("bin/start-nginx bundle exec puma", "bin/start-nginx bundle exec puma"),
    ("python manage.py migrate && gunicorn x.wsgi",
     "sh -c 'python manage.py migrate && gunicorn x.wsgi'"),
    ("gunicorn app:app --bind 0.0.0.0:${PORT:-5000}",
     "sh -c 'gunicorn app:app --bind 0.0.0.0:${PORT:-5000}'"),
])
def test_procfile_commands_get_only_the_binding_they_lack(line: str, command: str) -> None:
    assert bind_host(line) == command


def test_procfile_web_wins_over_detection_but_never_a_dev_server(tmp_path: Path) -> None:
    app = folder(tmp_path, {"requirements.txt": "flask\ngunicorn\n",
                            "app.py": "from flask import Flask\n"
                            "app = Flask(__name__)\n",
                            "Procfile": "# comment\nweb: gunicorn 'app:create()'\n"
                                        "Worker_2: rq worker\nrelease: flask db upgrade\n"})
    assert procfile(app) == {"web": "gunicorn 'app:create()'", "worker-2": "rq worker",
                             "release": "flask db upgrade"}
    found = detect(app)
    assert found.command == "gunicorn 'app:create()' --bind $HOST:$PORT"
    assert "(Procfile web:)" in found.reasons[-1]
    assert detect(app, command="python3 app.py").command == "python3 app.py"
    (app / "Procfile").write_text("web: python manage.py runserver 0.0.0.0:$PORT\n")
    found = detect(app)
    assert found.command == "gunicorn --bind $HOST:$PORT app:app"
    assert "runs a dev server: not used" in " ".join(found.reasons)
    only = folder(tmp_path / "only", {"Procfile": "web: ./server --port $PORT\n"})
    assert detect(only).command == "./server --port $PORT"


def test_a_dockerfile_only_app_runs_its_own_cmd(tmp_path: Path) -> None:
    app = folder(tmp_path, {"Dockerfile": "FROM x\nENTRYPOINT [\"tini\", \"--\"]\n"
                            "CMD gunicorn -b :8000 \\\n  app:app\n"})
    found = detect(app)
    assert found.command == "tini -- sh -c 'gunicorn -b :8000 app:app'"
    assert found.containerfile == "Dockerfile"


def spec_with(build: str = "") -> object:
    return parse_spec(f'[app]\nname = "a"\n[processes.web]\ncommand = "python3 app.py"\n'
                      f"[build]\n{build}\n")


def context_of(source: Path, tmp_path: Path) -> Path:
    import shutil

    context = tmp_path / "context"
    shutil.copytree(source, context)
    return context


MAIN_APP = {"app.py": MAIN, "requirements.txt": "flask\n", "Dockerfile": "FROM own\n",
            "deploy/Containerfile.prod": "FROM prod\n"}


def test_an_apps_own_dockerfile_is_built_as_is(tmp_path: Path) -> None:
    source = folder(tmp_path / "src", MAIN_APP)
    context = context_of(source, tmp_path)
    found = image.prepare_context(source, context, spec_with('base_image = "b:1"'))
    assert found.containerfile == "Dockerfile"
    assert not (context / "Containerfile").exists()  # nothing generated, base_image unused


def test_containerfile_generate_ignores_the_apps_own(tmp_path: Path) -> None:
    source = folder(tmp_path / "src", MAIN_APP)
    context = context_of(source, tmp_path)
    found = image.prepare_context(source, context, spec_with(
        'containerfile = "generate"\nbase_image = "registry.local/python:3.12-slim"'))
    assert found.containerfile is None
    generated = (context / "Containerfile").read_text()
    assert "FROM registry.local/python:3.12-slim" in generated
    assert 'CMD ["python3", "app.py"]' in generated
    assert (context / ".containerignore").exists()
    assert (context / "Dockerfile").read_text() == "FROM own\n"  # the app's file untouched


def test_containerfile_path_names_the_file_to_build(tmp_path: Path) -> None:
    source = folder(tmp_path / "src", MAIN_APP)
    context = context_of(source, tmp_path)
    found = image.prepare_context(source, context, spec_with(
        'containerfile = "deploy/Containerfile.prod"'))
    assert found.containerfile == "deploy/Containerfile.prod"
    assert not (context / "Containerfile").exists()
    for wrong in ("deploy/missing", "../outside"):
        with pytest.raises(ConfigError) as err:
            image.prepare_context(source, context, spec_with(f'containerfile = "{wrong}"'))
        assert f"build.containerfile: {wrong!r} is not a file" in err.value.message
    bare = folder(tmp_path / "bare", {"Procfile": "web: ./serve\n"})
    with pytest.raises(ConfigError) as err:
        image.prepare_context(bare, bare, spec_with('containerfile = "generate"'))
    assert "generates Containerfiles for Python and Node apps only" in err.value.message


@pytest.mark.integration
def test_headway_build_uses_the_apps_own_dockerfile_unless_told_to_generate(
        tmp_path: Path) -> None:
    """Real podman builds: the app's Dockerfile as is, then `containerfile = "generate"`."""
    import os
    import subprocess
    import sys

    from tests import images

    images.ensure()
    app = folder(tmp_path / "own", {
        "app.py": MAIN, "requirements.txt": "", ".python-version": "3.11\n",
        "Dockerfile": f"FROM {images.PYTHON}\nRUN echo mine > /own.txt\nCOPY . /app\n",
        "headway.toml": '[app]\nname = "own-build"\n[processes.web]\ncommand = "python3 app.py"\n'})
    env = dict(os.environ, HEADWAY_HOME=str(tmp_path / "home"))
    tag = "localhost/headway/own-build:latest"
    built: list[str] = []

    def build() -> str:
        done = subprocess.run([sys.executable, "-m", "headway", "build"], cwd=app, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr
        built.append(subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", tag],
                                    capture_output=True, text=True, check=True).stdout.strip())
        return subprocess.run(["podman", "run", "--rm", tag, "sh", "-c",
                               "cat /own.txt 2>/dev/null || echo generated"],
                              capture_output=True, text=True, check=True).stdout.strip()

    try:
        assert build() == "mine"
        with open(app / "headway.toml", "a") as f:
            f.write('[build]\ncontainerfile = "generate"\n')
        assert build() == "generated"
    finally:
        subprocess.run(["podman", "rmi", "-f", *built], capture_output=True, check=False)


@pytest.mark.parametrize(("line", "web", "migrations", "setup"), [
    (("python manage.py migrate && python manage.py collectstatic --no-input && gunicorn "
     "site.wsgi"), "gunicorn site.wsgi", ["python manage.py migrate"],
     ["python manage.py collectstatic --no-input"]),
    ("flask db upgrade; flask translate compile; exec gunicorn app:app", "gunicorn app:app",
     ["flask db upgrade"], ["flask translate compile"]),
    ("npm run migrate && node server.js", "node server.js", ["npm run migrate"], []),
    ("gunicorn site.wsgi", "gunicorn site.wsgi", [], []),
    ("cd web && gunicorn app:app", "cd web && gunicorn app:app", [], []),  # not a prep chain
    ("bin/prep | tee log; node x.js", "bin/prep | tee log; node x.js", [], []),
])
def test_a_procfile_web_line_that_prepares_before_it_serves_is_split(
        line: str, web: str, migrations: list[str], setup: list[str]) -> None:
    """Steps before the server would run in every instance at every start, beside the live
    release and before any backup, and fail in a read-only image."""
    assert split_web(line) == (web, migrations, setup)


def test_the_split_steps_become_the_release_command_and_the_build(tmp_path: Path) -> None:
    app = folder(tmp_path, {
        "requirements.txt": "django\ngunicorn\n",
        "manage.py": "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', "
                     "'site.settings')\n",
        "site/__init__.py": "", "site/wsgi.py": "",
        "site/settings.py": "STATIC_ROOT = BASE_DIR / 'staticfiles'\n",
        "Procfile": "web: python manage.py migrate && python manage.py collectstatic "
                    "--no-input && gunicorn site.wsgi\n"})
    found = detect(app)
    assert found.command == "gunicorn site.wsgi --bind $HOST:$PORT"
    assert found.build == ["python manage.py collectstatic --noinput"]  # the same step once
    assert candidates(app, found, set())[0] == ("python manage.py migrate",
                                                "the Procfile's web line, before its server")


def test_the_image_keeps_setuptools_that_apps_import_without_declaring(tmp_path: Path) -> None:
    # aiosql (in nsidnev/fastapi-realworld-example-app) imports pkg_resources: every venv
    # below Python 3.12 has it, so removing it from the image broke the app at start
    app = folder(tmp_path, {"app.py": "from flask import Flask\napp = Flask(__name__)\n",
                            "requirements.txt": "flask\ngunicorn\nwheel\n"})
    text = render(detect(app), source=app)
    uninstall = next(line for line in text.splitlines() if "pip uninstall" in line)
    assert " pip " in uninstall and "setuptools" not in uninstall and "wheel" not in uninstall


def test_database_settings_of_a_driver_the_app_lacks_are_not_required(tmp_path: Path) -> None:
    # aichbauer/express-rest-api-boilerplate: production reads DB_PASS, yet runs on SQLite
    app = folder(tmp_path, {
        "package.json": '{"scripts": {"start": "node api.js"}, "dependencies": {"sqlite3": "4"}}',
        "api.js": "const pass = process.env.DB_PASS;\nconst key = process.env.STRIPE_KEY;\n"})
    needs = scan(app, detect(app))
    assert [v.name for v in needs.secrets] == ["STRIPE_KEY"]
    assert [v.name for v in needs.optional_secrets] == ["DB_PASS"]


def test_a_production_dockerfile_wins_over_the_development_one(tmp_path: Path) -> None:
    app = folder(tmp_path, {"app.py": MAIN, "Dockerfile": "FROM x\n", "Dockerfile.prod": "FROM y\n"})
    assert detect(app).containerfile == "Dockerfile.prod"


def test_collectstatic_that_needs_the_environment_is_left_out_of_the_image(
        tmp_path: Path) -> None:
    # testdrivenio/django-on-docker: ALLOWED_HOSTS = os.environ.get("...").split(" ")
    app = folder(tmp_path, {
        "requirements.txt": "django\ngunicorn\n",
        "manage.py": "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'shop.settings')\n",
        "shop/__init__.py": "", "shop/wsgi.py": "application = None\n",
        "shop/settings.py": "STATIC_ROOT = 'static'\n"
                            "ALLOWED_HOSTS = os.environ.get('DJANGO_ALLOWED_HOSTS').split(' ')\n"})
    text = render(detect(app), source=app)
    assert "need DJANGO_ALLOWED_HOSTS" in text and "--from=build" not in text
    assert "COPY . ." in text


def test_a_migrate_script_that_runs_elsewhere_and_a_cookie_secret(tmp_path: Path) -> None:
    # gaganssingh/express-postgresql-knex-demo: migrate:prod is `heroku run ...`, and the
    # session cookie's secret is a signing key any random value serves
    app = folder(tmp_path, {
        "package.json": '{"scripts": {"start": "node src/index.js", "migrate:prod": '
                        '"heroku run npx knex migrate:latest"}, "dependencies": {"pg": "8"}}',
        "knexfile.js": "module.exports = {}\n",
        "src/index.js": "const s = process.env.COOKIE_SESSION_SECRET;\n"})
    found = detect(app)
    assert [c for c, _ in candidates(app, found, {"pg", "knex"})] == ["npx knex migrate:latest"]
    needs = scan(app, found)
    assert [v.name for v in needs.generated] == ["COOKIE_SESSION_SECRET"] and not needs.secrets


def _lock(packages: dict[str, dict[str, object]]) -> str:
    return json.dumps({"lockfileVersion": 3, "packages": {"": {}, **packages}})


def test_a_dependency_node_gyp_compiles_gets_a_compiler_in_the_install_stage_only(
        tmp_path: Path) -> None:
    # gaganssingh/express-postgresql-knex-demo: sqlite3 5.0.2 beside pg; the slim image has no
    # python3/make/g++, so `npm ci` failed with "gyp ERR! find Python" when no prebuilt fit
    app = folder(tmp_path, {
        "package.json": '{"scripts": {"start": "node src/index.js"}, '
                        '"dependencies": {"pg": "^8", "sqlite3": "^5.0.2"}}',
        "package-lock.json": _lock({
            "node_modules/sqlite3": {"version": "5.0.2", "hasInstallScript": True,
                                     "dependencies": {"node-addon-api": "^3", "node-pre-gyp": "^0.11"}},
            "node_modules/fsevents": {"hasInstallScript": True, "os": ["darwin"], "optional": True,
                                      "dependencies": {"nan": "^2"}},
            "node_modules/nodemon": {"dev": True, "hasInstallScript": True,
                                     "dependencies": {"node-gyp": "^9"}},
            "node_modules/bcrypt": {"hasInstallScript": True, "os": ["!win32"],
                                    "dependencies": {"@mapbox/node-pre-gyp": "^1"}},
            "node_modules/pg": {"version": "8.7.3"}}),
        "src/index.js": ""})
    found = detect(app)
    assert found.native == ["bcrypt", "sqlite3"]
    deps, final = render(found).split("\n\nFROM ")
    assert "apt-get install -y --no-install-recommends python3 python-is-python3 make g++" in deps
    assert deps.index("make g++") < deps.index("npm ci")  # cached apart from the lock
    assert "npm_config_nodedir=/usr/local" in deps  # the image's headers, not a download
    assert "apt-get" not in final and "g++" not in final


def test_no_compiler_without_a_native_dependency(tmp_path: Path) -> None:
    app = folder(tmp_path, {
        "package.json": '{"scripts": {"start": "node index.js"}, "dependencies": {"ws": "^8"}}',
        "package-lock.json": _lock({"node_modules/bufferutil": {
            "hasInstallScript": True, "dependencies": {"node-gyp-build": "^4"}}}),
        "index.js": ""})
    found = detect(app)
    assert found.native == []
    assert "apt-get" not in render(found)


@pytest.mark.parametrize(("folder_name", "name"), [
    ("azure-django-postgres-flexible-appservice", "azure-django-postgres-flexible"),
    ("a" * 39 + "-bcd", "a" * 39),  # never a trailing dash
    ("x" * 50, "x" * 40),
    ("2048-game", "app-2048-game"),
])
def test_the_app_name_is_cut_at_a_dash(tmp_path: Path, folder_name: str, name: str) -> None:
    (tmp_path / folder_name).mkdir()
    assert app_name(tmp_path / folder_name) == name
