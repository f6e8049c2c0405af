"""Image builds with podman or docker: a build context (a release snapshot) gets the generated
Containerfile and .containerignore unless the app has its own; the image is tagged and
labelled from git; pushes log in with the password on stdin. Every command is an argv list."""

from __future__ import annotations

import os
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from headway.builder import containerfile
from headway.builder.detect import Detected, detect
from headway.errors import ConfigError, RuntimeFailure
from headway.runtime import engines
from headway.secrets import Secret
from headway.spec.models import RegistrySpec, Spec
from headway.supply import sign

# called with (engine binary, image id) for every image built, before it is pushed or run;
# `headway deploy` sets it to its [scan] fail_on gate (cli/supply.py), None = no gate
after_build: Callable[[str, str], None] | None = None


def engine_binary(choice: str = "auto") -> str:
    """podman or docker, whichever answers (runtime.engines: "auto" tries podman first)."""
    return engines.find(choice)


@dataclass
class Built:
    image: str  # the image id
    names: list[str]
    seconds: float


def git_facts(source: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(source), *args], capture_output=True,
                              text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"revision": git("rev-parse", "HEAD"), "source": git("remote", "get-url", "origin"),
            "version": git("describe", "--tags", "--always", "--dirty")}


def detected(source: Path, spec: Spec) -> Detected:
    """What `source` holds, as headway.toml settles it: its web command wins over detection,
    and [build] containerfile chooses between the app's own file, a named one, or a generated
    one."""
    return detect(source, command=spec.processes["web"].command,
                  containerfile=spec.build.containerfile)


def prepare_context(source: Path, context: Path, spec: Spec) -> Detected:
    """Write the generated Containerfile and .containerignore into `context` (a copy of the
    app), unless the app brings its own Containerfile/Dockerfile (used as is) or [build]
    containerfile names one; `[build] containerfile = "generate"` generates anyway, and
    [build] base_image applies to generated files only. The web command of headway.toml wins
    over the detected one."""
    found = detected(source, spec)
    if found.containerfile:
        if not (context / found.containerfile).is_file():
            raise ConfigError(f"{found.containerfile} is not in the build context (ignored by "
                              ".gitignore or .headwayignore?)",
                              hint="commit it, or set [build] containerfile = \"generate\"")
        return found
    if found.language in {"container", "procfile"}:
        raise ConfigError(f"{source}: [build] containerfile = \"generate\", but Headway "
                          "generates Containerfiles for Python and Node apps only",
                          hint="remove that key to use the app's own file")
    (context / "Containerfile").write_text(
        containerfile.render(found, base=spec.build.base_image, source=context))
    (context / ".containerignore").write_text(containerfile.ignore_file([]))
    return found


def build(binary: str, context: Path, found: Detected, *, repo: str, tags: list[str],
          title: str, source: Path, platforms: list[str], log: Path) -> Built:
    facts = git_facts(source)
    labels = {"org.opencontainers.image.title": title,
              "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime()),
              "org.opencontainers.image.revision": facts["revision"],
              "org.opencontainers.image.source": facts["source"],
              "org.opencontainers.image.version": facts["version"] or tags[0]}
    names = [f"{repo}:{t}" for t in tags]
    file = found.containerfile or "Containerfile"
    argv = [binary, "build", "-f", str(context / file), *engines.of(binary).build_flags]
    engines.ignore_file(binary, context)
    for key, value in labels.items():
        if value:
            argv += ["--label", f"{key}={value}"]
    for name in names:
        argv += ["-t", name]
    if platforms:
        argv += ["--platform", ",".join(platforms)]
    argv.append(str(context))
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):  # podman 4.3 fails a build whose cache lost a layer to a removal at
        with open(log, "wb") as out:  # that moment (another release's image): once more
            code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=False,
                                  env=os.environ | engines.of(binary).build_env).returncode
        if code == 0 or "layer not known" not in _tail(log, 5):
            break
    if code != 0:
        raise RuntimeFailure(f"image build failed: {_failing_step(log)}",
                             hint=f"last lines of the build:\n{_tail(log, 15)}\nfull log: {log}")
    image = subprocess.run([binary, "image", "inspect", "--format", "{{.Id}}", names[0]],
                           capture_output=True, text=True, check=True).stdout.strip()
    if after_build is not None:  # the CLI's [scan] fail_on gate: before any push or start
        after_build(binary, image)
    return Built(image, names, time.monotonic() - started)


def pushed_for_commit(binary: str, source: Path, *, repo: str, tags: list[str],
                      registry: RegistrySpec, secrets: dict[str, str]) -> Built | None:
    """The image a build of this very commit already pushed (`REPO:REVISION`, e.g. by CI's
    staging job), pulled and tagged for this release instead of built again: a production
    deploy of a tag then runs the digest staging ran. None, and a build goes on, when the
    app's folder has uncommitted changes, the registry has no such tag, or [registry] verify
    is set (a signature is checked on the host that signed it: that host builds)."""
    revision = git_facts(source)["revision"][:12]
    dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--", "."],
                           capture_output=True, text=True, check=False).stdout.strip()
    if not revision or dirty or registry.verify or not registry.server:
        return None
    value = secrets.get(registry.password_secret) or os.environ.get(registry.password_env)
    login(binary, registry, Secret(value) if value else None)
    name = f"{repo}:{revision}"
    argv = [binary, "pull", "--quiet", name]
    if not registry.tls_verify and engines.of(binary).tls_verify_flag:
        argv.insert(2, "--tls-verify=false")
    started = time.monotonic()
    if subprocess.run(argv, capture_output=True, timeout=1800, check=False).returncode != 0:
        return None
    image = subprocess.run([binary, "image", "inspect", "--format", "{{.Id}}", name],
                           capture_output=True, text=True, check=False).stdout.strip()
    names = [f"{repo}:{t}" for t in tags]
    if not image or any(subprocess.run([binary, "tag", image, tagged], capture_output=True,
                                       check=False).returncode for tagged in names):
        return None  # the engine lost it again: build
    if after_build is not None:  # the [scan] fail_on gate holds for a pulled image too
        after_build(binary, image)
    return Built(image, names, time.monotonic() - started)


def _tail(log: Path, lines: int) -> str:
    with open(log, errors="replace") as f:
        return "".join(deque(f, maxlen=lines)).rstrip()


def _failing_step(log: Path) -> str:
    """podman's own "building at STEP ..." line, else the last step it started."""
    lines = log.read_text(errors="replace").splitlines()
    errors = [line.removeprefix("Error: ") for line in lines if line.startswith("Error: ")]
    steps = [line.strip() for line in lines if line.startswith(("STEP ", "Step "))]
    return errors[-1] if errors else steps[-1] if steps else "see its output"


def login(binary: str, registry: RegistrySpec, password: Secret | None) -> None:
    if not registry.username:
        return
    if password is None:
        raise ConfigError(f"registry.username is set but no password: set the secret "
                          f"{registry.password_secret} or ${registry.password_env}")
    argv = [binary, "login", "--username", registry.username, "--password-stdin"]
    if not registry.tls_verify and engines.of(binary).tls_verify_flag:
        argv.append("--tls-verify=false")
    done = subprocess.run([*argv, registry.server or ""], input=password.reveal(), text=True,
                          capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeFailure(f"registry {registry.server}: login failed",
                             hint=done.stderr.strip()[-500:])


def push(binary: str, names: list[str], registry: RegistrySpec) -> None:
    for name in names:
        argv = [binary, "push", name]
        if not registry.tls_verify and engines.of(binary).tls_verify_flag:
            argv.insert(2, "--tls-verify=false")
        argv[2:2] = sign.push_flags(registry)  # [registry] sign_by: podman's simple signing
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False,
                              env=sign.push_env(registry))
        if done.returncode != 0:
            raise RuntimeFailure(f"push of {name} to {registry.server} failed",
                                 hint=done.stderr.strip()[-800:])


def reachable(registry: RegistrySpec) -> None:
    """Fail early, before anything is stopped, when the registry does not answer."""
    import httpx

    scheme = "https" if registry.tls_verify else "http"
    try:
        httpx.get(f"{scheme}://{registry.server}/v2/", timeout=5)
    except httpx.HTTPError as exc:
        raise RuntimeFailure(f"registry.server {registry.server} is unreachable: {exc}",
                             hint="nothing was built or stopped") from None


def publish(binary: str, names: list[str], registry: RegistrySpec,
            secrets: dict[str, str]) -> None:
    """Log in (the password from `secrets`, else the environment) and push every name."""
    value = secrets.get(registry.password_secret) or os.environ.get(registry.password_env)
    login(binary, registry, Secret(value) if value else None)
    sign.before_push(binary, registry)  # sign_by, verify: a key that can sign, podman
    push(binary, names, registry)
    sign.after_push(binary, names, registry)  # verify: refused unless its signature verifies


def remove(binary: str, names: list[str], *, only: str) -> None:
    """Untag the names that still point at image `only` (deleted when no tag is left; an
    image in use stays)."""
    for name in names:
        found = subprocess.run([binary, "image", "inspect", "--format", "{{.Id}}", name],
                               capture_output=True, text=True, check=False).stdout.strip()
        if found == only:
            subprocess.run([binary, "rmi", name], capture_output=True, check=False)
