"""The docker runtime, end to end from the CLI against a real Docker engine (Debian's
docker.io) that the tests start themselves: their own dockerd on their own socket, bridge and
data root, never the machine's. The same checks as podman's (test_containers.py): health-gated
switch under load with no failed request, a broken release refused, rollback, kill -9 of the
agent and of `docker run`, secrets in no `docker inspect`, `ps` or file of the home, the
release command and `headway run` in the image, a push with the password on stdin. Base images
are podman's stand-ins loaded into the daemon (tests/images.py); its data root is kept between
runs as the build cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets as random
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headway.agent.control import agent_running
from headway.errors import RuntimeFailure
from headway.runtime import engines
from headway.runtime.container import EXPORT, Box, run_argv, secret_folder
from headway.spec.models import ProcessSpec
from tests.conftest import App, agent_pid, assert_nowhere, wait_for
from tests.dockerd import DOCKER, DockerdMissing, client_bin, own_dockerd
from tests.load import Load
from tests.test_containers import REGISTRY_PASSWORD, WORKER, registry  # noqa: F401

MOUNT = "type=bind,source=/dev/shm/headway/x/mac,target=/run/secrets/headway-API,readonly"


# unit: the argv, and the daemon that does not answer -------------------------------------------
def test_docker_argv_of_an_instance_and_of_a_one_off_command() -> None:
    labels = {"headway.home": "/h", "headway.app": "shop", "headway.env": "production",
              "headway.release": "3", "headway.process": "web"}
    box = Box(name="web-r3-abc", labels=labels, image="f" * 64, command=["serve", "8080"],
              env={"PORT": "8080"}, secrets={"API": "/dev/shm/headway/x/mac"},
              mounts={"/h/volumes/up": "/app/uploads"}, publish=21000,
              spec=ProcessSpec(command="serve", memory="256m", read_only=True))
    assert run_argv(["/usr/bin/docker", "--host", "unix:///s.sock"], box) == [
        "/usr/bin/docker", "--host", "unix:///s.sock", "run", "--rm", "--name", "web-r3-abc",
        "--init", "--label", "headway.home=/h", "--label", "headway.app=shop",
        "--label", "headway.env=production", "--label", "headway.release=3",
        "--label", "headway.process=web",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--stop-timeout", "10",
        "-p", "127.0.0.1:21000:8080", "--memory", "256m",
        "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/run",
        "-v", "/h/volumes/up:/app/uploads", "-e", "PORT=8080",
        "--mount", MOUNT, "--entrypoint", "/bin/sh", "f" * 64, *EXPORT[1:], "serve", "8080"]
    once = Box(name="headway-shop-production-run-1", labels=labels, image="f" * 64,
               command=["python", "manage.py", "migrate"], env={}, host_network=True,
               interactive=True)
    argv = run_argv("docker", once)
    assert argv[:5] == ["docker", "run", "--rm", "--name", "headway-shop-production-run-1"]
    assert "--replace" not in argv and "--stop-timeout" not in argv
    assert argv[argv.index("--network"):argv.index("--network") + 2] == ["--network", "host"]
    assert argv[argv.index("f" * 64):] == ["f" * 64, "python", "manage.py", "migrate"]


def test_a_docker_daemon_that_does_not_answer_is_named_with_what_to_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    monkeypatch.setenv("PATH", f"{client_bin(tmp_path)}:{os.environ['PATH']}")
    with pytest.raises(RuntimeFailure) as caught:
        engines.find("docker")
    assert f"the Docker daemon does not answer at unix://{tmp_path}/none.sock" in \
        caught.value.message
    assert "never starts the Docker daemon" in str(caught.value.hint)


# the engine ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def dockerd() -> Iterator[str]:
    """A Docker daemon of the tests' own (tests/dockerd.py): its socket, exec root, bridge and
    data root. Sets DOCKER_HOST and Debian's client first on PATH for the session."""
    try:
        with own_dockerd() as host:
            yield host
    except DockerdMissing as missing:
        pytest.fail(str(missing))


def docker(*args: str) -> str:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def docker_app(app: App, dockerd: str) -> Iterator[App]:
    toml = app.dir / "headway.toml"
    # one replica: half the containers to start (CI's budget); a loaded machine starts them slowly
    toml.write_text(toml.read_text().replace('runtime = "process"', 'runtime = "docker"')
                    .replace("replicas = 2", "replicas = 1"))
    app.configure(deploy='timeout = "60s"')
    yield app
    app.run("destroy", "--yes", check=False, timeout=60)
    ids = docker("ps", "-aq", "--filter", f"label=headway.home={app.home}").split()
    if ids:
        docker("rm", "-f", *ids)


def containers(app: App) -> list[dict]:  # type: ignore[type-arg]
    insts = json.loads(app.run("status", "--json").stdout)["instances"]
    return [json.loads(docker("inspect", i["id"]))[0] for i in insts]


MIGRATE = ("import os\n"  # the release command: in the image, as its user, with the secret
           "token = os.environ.get('API_TOKEN', '')\n"
           "raise SystemExit(0 if os.getuid() == 10001 and token.startswith('tok-') else 3)\n")


@pytest.mark.integration
def test_docker_deploys_switch_refuse_roll_back_and_survive_kill_9_without_a_failed_request(
        docker_app: App) -> None:
    app = docker_app
    token = f"tok-{random.token_hex(16)}"
    digest = hashlib.sha256(token.encode()).hexdigest()
    (app.dir / "worker.py").write_text(WORKER)
    (app.dir / "migrate.py").write_text(MIGRATE)
    app.configure(processes__worker='command = "python3 worker.py"\nread_only = true\n'
                                    'memory = "256m"',
                  processes__worker__health='path = ""\ninterval = "200ms"',
                  release='command = "python3 migrate.py"')
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "API_TOKEN"],
                   input=token, cwd=app.dir, env=app.env(), check=True, capture_output=True,
                   text=True)
    assert "release 1 is live" in app.run("deploy").stdout
    assert "`python3 migrate.py` exited 0" in app.run("events").stdout  # uid 10001, its secret
    boxes = {b["Config"]["Labels"]["headway.process"]: b for b in containers(app)}
    for box in boxes.values():
        labels = box["Config"]["Labels"]
        assert labels["headway.app"] == "hello" and labels["headway.release"] == "1"
        assert labels["org.opencontainers.image.title"] == "hello"
        assert box["HostConfig"]["CapDrop"] == ["ALL"]
        assert box["HostConfig"]["SecurityOpt"] == ["no-new-privileges"]
        assert docker("exec", box["Id"], "id", "-u").strip() == "10001"
        assert token not in json.dumps(box)
    assert boxes["web"]["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostIp"] == "127.0.0.1"
    assert boxes["worker"]["HostConfig"]["ReadonlyRootfs"] is True
    assert boxes["worker"]["HostConfig"]["Memory"] == 256 * 2**20
    wait_for(lambda: digest in app.run("logs", "--process", "worker").stdout, "the worker")
    ran = app.run("run", "--", "python3", "-c", "import hashlib, os; print(os.getuid(), "
                  "hashlib.sha256(os.environ['API_TOKEN'].encode()).hexdigest())")
    assert f"10001 {digest}" in ran.stdout
    assert_nowhere(token, app.home)
    folder = secret_folder(app.home, "hello", "production")
    assert [oct(p.stat().st_mode & 0o777) for p in folder.iterdir()] == ["0o400"]
    purls = {c["purl"] for c in json.loads(app.run("sbom").stdout)["components"]}
    assert any(p.startswith("pkg:deb/debian/libc6@") for p in purls)  # read from the image
    assert "pkg:pypi/fastapi@0.165.0" in purls
    assert not docker("ps", "-aq", "--filter", "status=created")  # its container is gone

    with Load(app.url) as load:
        victim = next(i for i in json.loads(app.run("status", "--json").stdout)["instances"]
                      if i["process"] == "web")
        os.kill(victim["pid"], signal.SIGKILL)  # `docker run` dies; its container lives on
        time.sleep(2)
        os.kill(agent_pid(app), signal.SIGKILL)
        wait_for(lambda: not agent_running(app.home), "the agent to die")
        app.set_version("v2")
        assert "release 2 is live" in app.run("deploy").stdout
        app.set_version("v3", broken="crash")
        refused = app.run("deploy", check=False)
        assert refused.returncode == 4 and "refusing to start" in refused.stderr
        app.set_version("v3")
        assert "release 1 is live again" in app.run("rollback").stdout
        time.sleep(1)
    assert load.failed == 0, (load.codes, load.errors, load.failures[:5])
    assert load.versions["v2"] > 0 and app.version() == "v1"
    running = docker("ps", "--format", "{{.Names}}", "--filter", f"label=headway.home={app.home}")
    live = {i["id"] for i in json.loads(app.run("status", "--json").stdout)["instances"]}
    assert live <= set(running.split())  # warm release 2 may still run beside them
    tags = docker("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/headway/hello")
    assert {"localhost/headway/hello:production-1", "localhost/headway/hello:latest"} <= \
        set(tags.split())
    app.run("destroy", "--yes")
    assert not folder.exists()


@pytest.mark.integration
def test_docker_build_pushes_with_the_password_on_stdin(
        docker_app: App, registry: str, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = docker_app
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # its login stays here
    tiny = io.BytesIO()  # a base of one file: what is pushed is seconds, not a Python image
    with tarfile.open(fileobj=tiny, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    subprocess.run([DOCKER, "import", "-", "localhost/headway-test/tiny:1"],
                   input=tiny.getvalue(), check=True, capture_output=True)
    (app.dir / "Containerfile").write_text("FROM localhost/headway-test/tiny:1\n"
                                           "COPY VERSION /VERSION\n")
    app.configure(registry=f'server = "{registry}"\ntls_verify = false\nusername = "ci"')
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "REGISTRY_PASSWORD"],
                   input=REGISTRY_PASSWORD, cwd=app.dir, env=app.env(), check=True,
                   capture_output=True, text=True)
    assert "and pushed" in app.run("build", "--push").stdout
    tags = httpx.get(f"http://{registry}/v2/hello/tags/list", timeout=5,
                     auth=("ci", REGISTRY_PASSWORD)).json()["tags"]
    assert "latest" in tags
    assert (tmp_path / "docker-config" / "config.json").exists()  # docker login did log in


@pytest.mark.integration
def test_auto_picks_docker_when_podman_does_not_answer(docker_app: App, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    app = docker_app
    fake = tmp_path / "no-podman"
    fake.mkdir()
    (fake / "podman").write_text("#!/bin/sh\necho 'cannot connect' >&2\nexit 125\n")
    (fake / "podman").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text().replace('runtime = "docker"', 'runtime = "auto"'))
    plan = app.run("deploy", "--dry-run").stdout
    assert "with docker" in plan and "chose docker" in plan
