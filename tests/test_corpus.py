"""A stranger's app, unedited, serves its database-backed pages after `headway init &&
headway deploy`, on the process runtime and on podman: each app of tests/corpus/ (real
layouts, see bench/corpus.py) is copied, init'ed and deployed; a row is written and read
back, then read again after a second deploy. Only ports are made test-safe in the headway.toml
init wrote. By default a subset that fits CI's budget (about 5 minutes on 2 cores): Python +
PostgreSQL + alembic in an image, a Procfile with a Redis-fed worker, SQLite in a data/ folder,
and Express + knex reading DB_* with knex migrations, on processes (Node in an image is
tests/test_node_apps.py's); HEADWAY_CORPUS=all runs every app on both runtimes (or
HEADWAY_CORPUS=name,name those). `python -m bench.corpus` runs all and prints JSON."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from _pytest.mark import ParameterSet

from bench.corpus import BY_NAME, RUNTIMES, CorpusApp, run_app
from tests import images

SUBSET = (("fastapi-uv", "podman"), ("worker-redis", "process"), ("stdlib-guestbook", "process"),
          ("express-knex", "process"))

# Failures diagnosed outside the corpus, each with its cause; delete an entry once it is fixed
# (an entry that passes shows as XPASS).
KNOWN: dict[tuple[str, str], str] = {}
DEFAULT_PYTHON = "docker.io/library/python:3.12-slim"
OWN_DOCKERFILE_IMAGE = "docker.io/library/python:3.11-slim"  # dockerfile-flask's FROM


def lacks(image: str) -> bool:
    return bool(shutil.which("podman")) and subprocess.run(
        ["podman", "image", "exists", image], capture_output=True, check=False).returncode != 0


if lacks(DEFAULT_PYTHON):
    KNOWN[("stdlib-guestbook", "podman")] = (
        f"no Python version declared: the generated Containerfile uses {DEFAULT_PYTHON}, and "
        "tests/images.py makes only a python:3.11-slim stand-in (nothing can be pulled here)")


def lacks_pip(image: str) -> bool:
    """The official python images have pip on PATH; a stand-in made from Debian's python3
    may not (an app's own Dockerfile runs `pip install`)."""
    return bool(shutil.which("podman")) and not lacks(image) and subprocess.run(
        ["podman", "run", "--rm", image, "sh", "-c", "command -v pip"], capture_output=True,
        check=False).returncode != 0


def known_failure(app: str, runtime: str) -> str | None:
    """Why this run fails here for a cause outside Headway, or None."""
    if (app, runtime) == ("dockerfile-flask", "podman") and lacks_pip(OWN_DOCKERFILE_IMAGE):
        return (f"the {OWN_DOCKERFILE_IMAGE} stand-in made by tests/images.py has no pip "
                "(Debian's python3 without python3-pip), so the app's own Dockerfile fails at "
                "`RUN pip install` (exit 127); the official image has pip")
    return KNOWN.get((app, runtime))


def chosen() -> list[tuple[CorpusApp, str]]:
    wanted = os.environ.get("HEADWAY_CORPUS", "")
    if not wanted:
        return [(BY_NAME[name], runtime) for name, runtime in SUBSET]
    names = list(BY_NAME) if wanted == "all" else wanted.split(",")
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        raise pytest.UsageError(f"HEADWAY_CORPUS: no corpus app named {', '.join(unknown)} "
                                f"(known: all, {', '.join(BY_NAME)})")
    return [(BY_NAME[name], runtime) for name in names for runtime in RUNTIMES]


def param(app: CorpusApp, runtime: str) -> ParameterSet:
    known = known_failure(app.name, runtime)
    marks = [pytest.mark.xfail(reason=known, strict=False)] if known else []
    return pytest.param(app, runtime, id=f"{app.name}-{runtime}", marks=marks)


@pytest.fixture(scope="session")
def podman_images() -> None:
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: run scripts/setup.sh")
    images.ensure(defaults=bool(os.environ.get("HEADWAY_CORPUS")))  # the whole corpus


@pytest.mark.integration
@pytest.mark.parametrize(("corpus_app", "runtime"), [param(a, r) for a, r in chosen()])
def test_app_deploys_unedited_and_keeps_its_data(corpus_app: CorpusApp, runtime: str,
                                                  request: pytest.FixtureRequest) -> None:
    if corpus_app.cannot_run:
        pytest.skip(f"{corpus_app.name} cannot run here: {corpus_app.cannot_run}")
    if not shutil.which("haproxy", path=os.environ.get("PATH", "") + ":/usr/sbin"):
        pytest.fail("HAProxy is not installed: run .ci/run or `apt-get install -y haproxy`")
    if runtime == "podman":
        request.getfixturevalue("podman_images")
    outcome = run_app(corpus_app, runtime)
    assert outcome.deployed_unedited, (
        f"{corpus_app.name} ({corpus_app.what}) on {runtime} failed at {outcome.step}:\n"
        f"{outcome.message}")
