"""A stranger's app, unedited, serves its database-backed pages after `headway init &&
headway deploy`, on the process runtime and on podman: each app of tests/corpus/ (real
layouts, see bench/corpus.py) is copied, init'ed and deployed; a row is written and read
back, then read again after a second deploy. Only ports are made test-safe in the headway.toml
init wrote. By default a subset covering Python + PostgreSQL + migrations, a Node build step,
a Procfile with a Redis-fed worker, and SQLite in a data/ folder; HEADWAY_CORPUS=all runs every
app (or HEADWAY_CORPUS=name,name those). `python -m bench.corpus` runs all and prints JSON."""

from __future__ import annotations

import os
import shutil

import pytest

from bench.corpus import APPS, BY_NAME, RUNTIMES, CorpusApp, run_app
from tests import images

SUBSET = ("fastapi-uv", "ts-express", "worker-redis", "stdlib-guestbook")


def chosen() -> list[CorpusApp]:
    wanted = os.environ.get("HEADWAY_CORPUS", "")
    if wanted == "all":
        return list(APPS)
    names = wanted.split(",") if wanted else list(SUBSET)
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        raise pytest.UsageError(f"HEADWAY_CORPUS: no corpus app named {', '.join(unknown)} "
                                f"(known: all, {', '.join(BY_NAME)})")
    return [BY_NAME[name] for name in names]


@pytest.fixture(scope="session")
def podman_images() -> None:
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: run scripts/setup.sh")
    images.ensure()


@pytest.mark.integration
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("corpus_app", chosen(), ids=lambda a: a.name)
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
