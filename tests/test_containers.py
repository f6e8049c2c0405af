"""The podman runtime, end to end from the CLI with real podman, HAProxy and a real OCI
registry (Debian's docker-registry) on loopback. Base images are stand-ins made by
tests/images.py, since nothing can be pulled here."""

from __future__ import annotations

import hashlib
import json
import os
import secrets as random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headway.agent.control import agent_running
from headway.runtime.container import secret_prefix
from tests import images
from tests.conftest import (
    ROOT,
    App,
    agent_pid,
    assert_nowhere,
    free_port,
    registry_server,
    wait_for,
)
from tests.load import Load
from tests.test_data import WORKER as REDIS_WORKER

pytestmark = pytest.mark.integration  # podman, real HAProxy

REGISTRY_PASSWORD = f"reg-{random.token_hex(8)}"
WORKER = ("import hashlib, os, time\n"
          "print('token sha256', hashlib.sha256(os.environ['API_TOKEN'].encode()).hexdigest(),"
          " flush=True)\n"
          "time.sleep(3600)\n")


@pytest.fixture(scope="session")
def base_images() -> None:
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: run scripts/setup.sh")
    images.ensure()


@pytest.fixture
def podman_app(app: App, base_images: None) -> Iterator[App]:
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text().replace('runtime = "process"', 'runtime = "podman"'))
    yield app
    _remove_containers(app)


def _remove_containers(app: App) -> None:
    app.run("destroy", "--yes", check=False, timeout=60)
    ids = podman("ps", "-aq", "--filter", f"label=headway.home={app.home}").split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids)


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True,
                          check=True).stdout


def containers(app: App) -> list[dict]:  # type: ignore[type-arg]
    insts = json.loads(app.run("status", "--json").stdout)["instances"]
    return [json.loads(podman("inspect", i["id"]))[0] for i in insts]


def test_container_deploys_switch_refuse_and_roll_back_without_a_failed_request(
        podman_app: App) -> None:
    app = podman_app
    first = app.run("deploy")
    assert "release 1 is live" in first.stdout
    for box in containers(app):
        labels = box["Config"]["Labels"]
        assert labels["headway.app"] == "hello" and labels["headway.release"] == "1"
        assert labels["org.opencontainers.image.title"] == "hello"
        assert box["HostConfig"]["CapDrop"]
        assert box["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostIp"] == "127.0.0.1"
        assert podman("exec", box["Id"], "id", "-u").strip() == "10001"
    with Load(app.url) as load:
        app.set_version("v2")
        assert "release 2 is live" in app.run("deploy").stdout
        app.set_version("v3", broken="crash")
        refused = app.run("deploy", check=False)
        assert refused.returncode == 4 and "refusing to start" in refused.stderr
        app.set_version("v3")
        back = app.run("rollback")
        assert "release 1 is live again" in back.stdout
        time.sleep(1)
    assert load.failed == 0, (load.codes, load.errors)
    assert load.versions["v2"] > 0 and app.version() == "v1"
    tags = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/headway/hello")
    assert {"localhost/headway/hello:production-1", "localhost/headway/hello:latest"} <= \
        set(tags.split())


def test_secrets_reach_the_container_and_nothing_shows_them(podman_app: App) -> None:
    app = podman_app
    token = f"tok-{random.token_hex(16)}"
    (app.dir / "worker.py").write_text(WORKER)
    app.configure(processes__worker='command = "python3 worker.py"\nread_only = true\n'
                                    'memory = "256m"',
                  processes__worker__health='path = ""\ninterval = "200ms"')
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "API_TOKEN"],
                   input=token, cwd=app.dir, env=app.env(), check=True, capture_output=True,
                   text=True)
    app.run("deploy")
    time.sleep(2)
    logs = app.run("logs", "--process", "worker").stdout
    assert hashlib.sha256(token.encode()).hexdigest() in logs
    worker = next(b for b in containers(app) if b["Config"]["Labels"]["headway.process"] ==
                  "worker")
    assert worker["HostConfig"]["ReadonlyRootfs"] is True
    assert worker["HostConfig"]["Memory"] == 256 * 2**20
    for box in containers(app):
        assert token not in json.dumps(box)
    assert_nowhere(token, app.home)
    prefix = secret_prefix(app.home, "hello", "production")
    assert prefix in podman("secret", "ls", "--format", "{{.Name}}")
    app.run("destroy", "--yes")
    assert prefix not in podman("secret", "ls", "--format", "{{.Name}}")


def test_killed_agent_and_killed_podman_run_lose_no_request(podman_app: App) -> None:
    app = podman_app
    app.run("deploy")
    with Load(app.url) as load:
        victim = json.loads(app.run("status", "--json").stdout)["instances"][0]
        os.kill(victim["pid"], signal.SIGKILL)  # `podman run` dies; its container lives on
        time.sleep(3)
        os.kill(agent_pid(app), signal.SIGKILL)
        wait_for(lambda: not agent_running(app.home), "the agent to die")
        app.set_version("v2")
        assert "release 2 is live" in app.run("deploy").stdout
        time.sleep(1)
    assert load.failed == 0, (load.codes, load.errors, load.failures[:5], load.failures[-5:])
    assert app.version() == "v2"
    running = podman("ps", "--format", "{{.Names}}", "--filter", f"label=headway.home={app.home}")
    instances = {i["id"] for i in json.loads(app.run("status", "--json").stdout)["instances"]}
    assert set(running.split()) == instances  # one container per instance: no orphan


def test_a_failing_containerfile_shows_its_step_and_changes_nothing(podman_app: App) -> None:
    app = podman_app
    (app.dir / "Containerfile").write_text(
        "FROM docker.io/library/python:3.11-slim\nRUN echo compiling && exit 3\n")
    failed = app.run("deploy", check=False)
    assert failed.returncode == 6
    assert 'image build failed: building at STEP "RUN echo compiling && exit 3"' in failed.stderr
    assert "compiling" in failed.stderr
    assert json.loads(app.run("releases", "--json").stdout)[0]["status"] == "failed"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    with registry_server(tmp_path, REGISTRY_PASSWORD) as server:
        yield server


def test_build_pushes_to_a_registry_and_explains_what_it_detected(
        podman_app: App, registry: str) -> None:
    app = podman_app
    explained = app.run("build", "--explain").stdout
    assert "Python 3.11 from .python-version" in explained
    assert 'CMD ["python3", "app.py"]' in explained and "USER 10001" in explained
    app.configure(registry=f'server = "{registry}"\ntls_verify = false\nusername = "ci"')
    refused = app.run("build", "--push", check=False)
    assert refused.returncode == 2 and "no password" in refused.stderr
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "REGISTRY_PASSWORD"],
                   input=REGISTRY_PASSWORD, cwd=app.dir, env=app.env(), check=True,
                   capture_output=True, text=True)
    built = app.run("build", "--push")
    assert "and pushed" in built.stdout
    tags = httpx.get(f"http://{registry}/v2/hello/tags/list", timeout=5,
                     auth=("ci", REGISTRY_PASSWORD)).json()["tags"]
    assert "latest" in tags
    podman("rmi", f"{registry}/hello:latest")
    podman("pull", "--tls-verify=false", f"{registry}/hello:latest")

    app.configure(registry=f'server = "127.0.0.1:{free_port()}"')
    unreachable = app.run("build", "--push", check=False)
    assert unreachable.returncode == 6 and "is unreachable" in unreachable.stderr


def test_a_commit_already_pushed_is_deployed_by_its_image_not_rebuilt(
        podman_app: App, registry: str) -> None:
    # a tag's production deploy on a fresh CI runner runs the image staging built and pushed
    app = podman_app
    app.configure(registry=f'server = "{registry}"\ntls_verify = false\nusername = "ci"')
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "REGISTRY_PASSWORD"],
                   input=REGISTRY_PASSWORD, cwd=app.dir, env=app.env(), check=True,
                   capture_output=True, text=True)
    git = ["git", "-C", str(app.dir), "-c", "user.name=ci", "-c", "user.email=ci@example.com"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "v1"]):
        subprocess.run([*git, *step], check=True, capture_output=True)
    app.run("deploy")
    first = containers(app)[0]["Image"]
    app.run("destroy", "--yes")
    for name in podman("images", "--format", "{{.Repository}}:{{.Tag}}",
                       "--filter", f"reference={registry}/hello").split():
        podman("rmi", "-f", name)  # a fresh runner: nothing of it on this machine
    app.run("deploy")
    assert containers(app)[0]["Image"] == first  # pulled: a rebuild has another id
    assert app.version() == "v1"


def test_uncommitted_changes_or_verify_are_built_never_pulled(tmp_path: Path) -> None:
    from headway.builder.image import pushed_for_commit
    from headway.spec.models import RegistrySpec

    git = ["git", "-C", str(tmp_path), "-c", "user.name=ci", "-c", "user.email=ci@example.com"]
    (tmp_path / "app.py").write_text("v1")
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "v1"]):
        subprocess.run([*git, *step], check=True, capture_output=True)
    (tmp_path / "app.py").write_text("v2")  # the image of the commit is not this code
    engine, asked = tmp_path.parent / "engine", tmp_path.parent / "asked"
    engine.write_text(f"#!/bin/sh\necho \"$@\" >> {asked}\nexit 1\n")  # no such image
    engine.chmod(0o755)
    kw = {"repo": "r/hello", "tags": ["production-2"], "secrets": {}}
    registry = RegistrySpec(server="127.0.0.1:1", tls_verify=False)
    assert pushed_for_commit(str(engine), tmp_path, registry=registry, **kw) is None
    subprocess.run([*git, "commit", "-qam", "v2"], check=True, capture_output=True)
    signed = RegistrySpec(server="127.0.0.1:1", verify=True, sign_by="ABCD")
    assert pushed_for_commit(str(engine), tmp_path, registry=signed, **kw) is None
    assert not asked.exists()  # neither asked the registry: both are built
    assert pushed_for_commit(str(engine), tmp_path, registry=registry, **kw) is None
    revision = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()[:12]
    assert f"pull --tls-verify=false --quiet r/hello:{revision}" in asked.read_text()


def test_a_build_that_lost_a_cached_layer_to_a_removal_is_run_once_more(tmp_path: Path) -> None:
    # podman 4.3: another image removed at that moment takes a layer the build's cache used
    from types import SimpleNamespace

    from headway.builder.image import build

    engine, runs = tmp_path / "podman", tmp_path / "runs"
    engine.write_text(f"""#!/bin/sh
if [ "$1" = build ]; then
  echo x >> {runs}
  if [ "$(wc -l < {runs})" = 1 ]; then
    echo "Error: checking if cached image exists from a previous build: getting top layer info: layer not known"
    exit 125
  fi
  exit 0
fi
echo sha256:0123
""")
    engine.chmod(0o755)
    found = SimpleNamespace(containerfile="Containerfile")
    built = build(str(engine), tmp_path, found, repo="r/hello", tags=["production-1"],  # type: ignore[arg-type]
                  title="hello", source=tmp_path, platforms=[], log=tmp_path / "build.log")
    assert built.image == "sha256:0123" and runs.read_text().count("x") == 2


def test_the_node_example_deploys_in_a_container(app: App, base_images: None) -> None:
    node = app.dir.parent / "node-hello"
    shutil.copytree(ROOT / "examples" / "node-hello", node)
    toml = (node / "headway.toml").read_text().replace("port = 18081", f"port = {app.port}")
    (node / "headway.toml").write_text(toml + '\n[processes.web.health]\ninterval = "200ms"\n'
                                       f'\n[observe]\nmetrics_port = {app.metrics_port}\n'
                                       f"router_metrics_port = {app.router_metrics_port}\n")
    node_app = App(node, app.home, app.port)
    try:
        assert "release 1 is live" in node_app.run("deploy").stdout
        assert httpx.get(app.url, timeout=5).json() == {"app": "node-hello", "version": "v1"}
        box = containers(node_app)[0]
        assert podman("exec", box["Id"], "id", "-un").strip() == "node"
        assert "NODE_ENV=production" in box["Config"]["Env"]
    finally:
        node_app.run("destroy", "--yes", check=False, timeout=60)


def test_images_of_pruned_releases_are_removed(podman_app: App) -> None:
    app = podman_app
    app.configure(deploy='keep_releases = 2\nkeep_previous = "0s"')
    made = []
    for version in ("v1", "v2", "v3"):
        app.set_version(version)
        app.run("deploy")
        made.append(podman("ps", "--format", "{{.ImageID}}", "--filter",
                           f"label=headway.home={app.home}", "--filter",
                           f"label=headway.release={len(made) + 1}").split()[0])
    def exists() -> list[bool]:
        return [subprocess.run(["podman", "image", "exists", i], check=False).returncode == 0
                for i in made]

    # release 1's image goes with its folder once its last container is gone
    wait_for(lambda: exists() == [False, True, True], "release 1's image to be removed")
    assert app.version() == "v3"


def test_containers_reach_the_apps_accessories(podman_app: App) -> None:
    app = podman_app
    (app.dir / "worker.py").write_text(REDIS_WORKER)
    app.configure(accessories__cache='type = "redis"',
                  processes__worker='command = "python3 worker.py"',
                  processes__worker__health='path = ""\ninterval = "200ms"')
    with Load(app.url) as load:
        app.run("deploy")
        time.sleep(2)
    assert load.versions["v1"] > 0
    assert app.run("accessory", "redis-cli", "cache", "GET", "worker_starts").stdout.strip() == "1"
    web = next(b for b in containers(app) if b["Config"]["Labels"]["headway.process"] == "web")
    assert web["HostConfig"]["NetworkMode"] == "host"  # the accessory is on the host's loopback
