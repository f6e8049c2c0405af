"""[volumes]: a folder of the app kept outside every release (and image), seen by every
instance and one-off command of every release, surviving deploys, a rollback and the pruning
of old releases; deleted only by `destroy --volumes`, confirmed. Both runtimes, real HAProxy,
processes and podman."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import App, wait_for
from tests.test_containers import base_images, podman_app  # noqa: F401 - fixtures


def read(app: App, how: str, name: str) -> str:
    return app.run(how, "--", "cat", f"data/{name}").stdout


def statuses(app: App) -> dict[int, str]:
    return {r["number"]: r["status"] for r in json.loads(app.run("releases", "--json").stdout)}


def survives(app: App) -> Path:
    """Write through an instance and a one-off command; deploy twice, roll back, prune."""
    (app.dir / "data").mkdir()
    (app.dir / "data" / "seed.txt").write_text("seed v1")
    app.configure(volumes='data = "data"', deploy='keep_releases = 2\nkeep_previous = "0s"')
    app.run("deploy")
    volume = app.home / "apps" / "hello" / "production" / "volumes" / "data"
    assert (volume / "seed.txt").read_text() == "seed v1"  # seeded from the first release
    app.run("exec", "--", "python3", "-c", "open('data/note', 'w').write('from release 1')")
    (app.dir / "data" / "seed.txt").write_text("seed v2")
    for version in ("v2", "v3"):
        app.set_version(version)
        app.run("deploy")
    assert read(app, "exec", "note") == "from release 1"
    assert read(app, "run", "seed.txt") == "seed v1"  # seeded once, never overwritten
    app.run("run", "--", "python3", "-c", "open('data/run', 'w').write('one-off')")
    app.run("rollback")
    assert app.version() == "v2"
    assert read(app, "exec", "note") == "from release 1"
    assert read(app, "exec", "run") == "one-off"
    wait_for(lambda: statuses(app)[1] == "pruned", "release 1 to be pruned")
    assert not Path(app.home / "apps" / "hello" / "production" / "releases" / "1").exists()
    assert (volume / "note").read_text() == "from release 1"
    refused = app.run("destroy", "--volumes", check=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert app.version() == "v2"
    return volume


@pytest.mark.integration
def test_a_volume_survives_deploys_rollback_pruning_and_destroy_on_processes(app: App) -> None:
    volume = survives(app)
    release = app.home / "apps" / "hello" / "production" / "releases" / "2" / "data"
    assert release.is_symlink() and release.resolve() == volume
    app.run("destroy", "--yes")
    assert (volume / "note").exists()  # only --volumes deletes the data
    app.run("deploy")
    assert read(app, "run", "note") == "from release 1"
    app.run("destroy", "--volumes", "--yes")
    assert not volume.exists()


@pytest.mark.integration
def test_a_volume_survives_deploys_rollback_and_pruning_in_containers(
        podman_app: App) -> None:  # noqa: F811
    volume = survives(podman_app)
    assert (volume / "note").stat().st_uid == 10001  # owned by the image's user
    podman_app.run("destroy", "--volumes", "--yes")
    assert not volume.exists()
