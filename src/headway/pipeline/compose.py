"""compose.yaml and compose.override.yaml for local development, from headway.toml: every
process a service of the app's image (built from its own Containerfile, or from the one Headway
generates, inline), every accessory a service of its official image with a named volume and
a healthcheck that the app's services wait for (`condition: service_healthy`); variables from
[env], URLs of the accessories by service name, secrets and passwords as `${NAME}` references
to an untracked .env (the values are not here: the CLI writes them). The override bind-mounts
the source, runs the framework's reload command when Headway knows one and publishes the
debugger's port. Pure: returns data and text; never writes a file, never runs anything."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from headway.builder.common import HOST, PORT, Detected
from headway.errors import ConfigError
from headway.spec.models import AccessorySpec, Spec

IMAGES = {"postgres": ("docker.io/library/postgres", "17"),
          "redis": ("docker.io/library/redis", "7")}
DATA = {"postgres": "/var/lib/postgresql/data", "redis": "/data"}
INNER_PORT = {"postgres": 5432, "redis": 6379}
DEBUG_PORT = {"python": 5678, "node": 9229, "bun": 6499}
WORKDIR = "/app"  # where the generated Containerfiles put the app
SECRET_LENGTH = 32
SHELL = re.compile(r"&&|\|\||[;|<>`]")
# redis reads requirepass from stdin, so the password is in no process's argv
REDIS_COMMAND = ["sh", "-c", ("printf 'requirepass %s\\n' \"$$REDISCLI_AUTH\" | "
                              "exec redis-server - --appendonly yes")]


@dataclass(frozen=True)
class Variable:
    """A value .env must hold: made once (random, `length` characters), then kept."""

    name: str
    length: int
    why: str


@dataclass(frozen=True)
class Build:
    """How compose builds the app's image: the app's own file, or Headway's generated text."""

    context: str  # the app folder, relative to the compose file ("." or "./app")
    dockerfile: str | None = None
    inline: str | None = None


@dataclass
class Compose:
    main: str
    override: str
    variables: list[Variable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should know


def password_variable(name: str) -> str:
    """The .env variable of accessory NAME's password: db -> DB_PASSWORD."""
    return f"{name.upper().replace('-', '_')}_PASSWORD"


def escape(value: str) -> str:
    """A literal value in a compose file: `$` is compose's interpolation, `$$` a dollar."""
    return value.replace("$", "$$")


def accessory_parts(name: str, acc: AccessorySpec, app: str) -> dict[str, str]:
    """url, host, port, user, password, database of accessory NAME as the app's containers
    reach it: by service name, the password a reference to .env."""
    password = f"${{{password_variable(name)}}}"
    port = str(INNER_PORT[acc.type])
    if acc.type == "postgres":
        user, database = acc.user or _pg_name(app), acc.database or _pg_name(app)
        url = f"{acc.scheme or 'postgresql'}://{user}:{password}@{name}:{port}/{database}"
    else:
        user, database = "", "0"
        url = f"redis://:{password}@{name}:{port}/0"
    return {"url": url, "host": name, "port": port, "user": user, "password": password,
            "database": database}


def _pg_name(app: str) -> str:
    return app.replace("-", "_")


def render(spec: Spec, found: Detected, build: Build, *, env: dict[str, str],
           port: int) -> Compose:
    """Both files and the .env variables they reference. `env`: [env] for the chosen
    environment; `port`: the host port (on 127.0.0.1) the web process is published on."""
    _check_names(spec)
    variables = [Variable(password_variable(n), SECRET_LENGTH,
                          f"password of accessories.{n} ({a.type})")
                 for n, a in spec.accessories.items()]
    computed = {a.env_name for a in spec.accessories.values()} | {
        v for a in spec.accessories.values() for v in a.env}
    for name in [*spec.app.secrets, *spec.secrets]:
        if name in computed or any(v.name == name for v in variables):
            continue
        how = spec.secrets.get(name, "")
        length = int(how.split(":", 1)[1]) if re.fullmatch(r"generate:\d+", how) else SECRET_LENGTH
        why = "secrets." + name if how else "app.secrets"
        variables.append(Variable(name, length, f"{why}: a development value, made here"))
    image = f"localhost/headway/{spec.app.name}:compose"
    environment = _app_environment(spec, env, variables)
    services: dict[str, Any] = {}
    for name, acc in spec.accessories.items():
        services[name] = _accessory_service(name, acc, spec.app.name)
    healthy = {name: {"condition": "service_healthy"} for name in spec.accessories}
    for process, proc in spec.processes.items():
        service: dict[str, Any] = {"image": image, "build": _build_section(build)}
        service["command"] = container_command(proc.command)
        service["environment"] = environment
        if process == "web":
            service["ports"] = [f"127.0.0.1:{port}:{PORT}"]
        if healthy:
            service["depends_on"] = healthy
        mounts = [f"{name}:{WORKDIR}/{where.strip('/')}" for name, where in spec.volumes.items()]
        if mounts:
            service["volumes"] = mounts
        services[process] = service
    volumes: dict[str, dict[str, str]] = {f"{n}-data": {} for n in spec.accessories}
    volumes |= {n: {} for n in spec.volumes}
    main: dict[str, Any] = {"name": spec.app.name, "services": services}
    if volumes:
        main["volumes"] = volumes
    override, notes = _override(spec, found, build)
    head = ("# Generated by `headway generate compose` from headway.toml. Secrets and passwords "
            "come from .env\n# (untracked, mode 0600): `podman-compose up` or `docker compose "
            "up`.\n")
    return Compose(head + dump(main), _override_head(found) + dump(override), variables, notes)


def _check_names(spec: Spec) -> None:
    for name in spec.accessories:
        if name in spec.processes:
            raise ConfigError(f"accessories.{name}: the name is also processes.{name}; "
                              "compose needs one service per name",
                              hint="rename the accessory or the process")
        if name in spec.volumes:
            raise ConfigError(f"accessories.{name}: the name is also volumes.{name}",
                              hint="rename one of them")


def _build_section(build: Build) -> dict[str, str]:
    section = {"context": build.context}
    if build.dockerfile:
        section["dockerfile"] = build.dockerfile
    elif build.inline is not None:
        section["dockerfile_inline"] = escape(build.inline)
    return section


def _app_environment(spec: Spec, env: dict[str, str],
                     variables: list[Variable]) -> dict[str, str]:
    out = {"HOST": HOST, "PORT": str(PORT)} | {k: escape(v) for k, v in sorted(env.items())}
    for name, acc in spec.accessories.items():
        parts = accessory_parts(name, acc, spec.app.name)
        out[acc.env_name] = parts["url"]
        for key, part in acc.env.items():
            out[key] = parts[part]
    passwords = {password_variable(n) for n in spec.accessories}
    for var in variables:
        if var.name not in passwords or var.name in spec.app.secrets:
            out[var.name] = f"${{{var.name}}}"
    return out


def _accessory_service(name: str, acc: AccessorySpec, app: str) -> dict[str, Any]:
    repo, default = IMAGES[acc.type]
    version = (acc.version or default).split(".")[0] if acc.type == "postgres" else (
        acc.version or default)
    password = f"${{{password_variable(name)}}}"
    service: dict[str, Any] = {"image": f"{repo}:{version}"}
    if acc.type == "postgres":
        parts = accessory_parts(name, acc, app)
        service["environment"] = {"POSTGRES_USER": parts["user"], "POSTGRES_PASSWORD": password,
                                  "POSTGRES_DB": parts["database"]}
        test = ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", parts["user"], "-d",
                parts["database"]]
    else:
        service["command"] = REDIS_COMMAND
        service["environment"] = {"REDISCLI_AUTH": password}
        test = ["CMD", "redis-cli", "ping"]
    service["volumes"] = [f"{name}-data:{DATA[acc.type]}"]
    service["healthcheck"] = {"test": test, "interval": "2s", "timeout": "5s", "retries": 30,
                              "start_period": "5s"}
    return service


def container_command(command: str) -> list[str]:
    """The process's command for its container: $HOST and $PORT as the container's; a command
    that needs a shell (other variables, `&&`, pipes) runs under `sh -c` inside it, its `$`
    escaped so compose leaves them to that shell."""
    plain = re.sub(r"\$\{?(HOST|PORT)\}?",
                   lambda m: HOST if m.group(1) == "HOST" else str(PORT), command)
    if "$" in plain or SHELL.search(plain):
        return ["sh", "-c", escape(plain)]
    try:
        return shlex.split(plain)
    except ValueError as exc:
        raise ConfigError(f"processes: {command!r} is not a command line ({exc})") from None


def reload_command(command: str) -> list[str] | None:
    """The web command with its server's own reload switch, when Headway knows it: uvicorn,
    hypercorn, gunicorn (--reload), node and bun (--watch); None otherwise."""
    words = container_command(command)
    if words[0] == "sh":
        return None
    tool = words[0].rsplit("/", 1)[-1]
    module = words[2] if len(words) > 2 and tool.startswith("python") and words[1] == "-m" \
        else None
    if tool in {"uvicorn", "hypercorn", "gunicorn"} or module in {"uvicorn", "hypercorn",
                                                                   "gunicorn"}:
        return [*words, "--reload"]
    if tool in {"node", "bun"}:
        return [words[0], "--watch", *words[1:]]
    return None


def _override(spec: Spec, found: Detected, build: Build) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    source = build.context if build.context.startswith(".") else f"./{build.context}"
    services: dict[str, Any] = {}
    for process, proc in spec.processes.items():
        mounts = [f"{source}:{WORKDIR}"]
        if found.language in {"node", "bun"}:
            mounts.append(f"{WORKDIR}/node_modules")  # the image's, not the host's
        service: dict[str, Any] = {"volumes": mounts}
        if process == "web":
            reload = reload_command(proc.command)
            if reload:
                service["command"] = reload
            else:
                notes.append(f"no reload command known for `{proc.command}`: the override "
                             "runs it as it is (restart the service to pick up changes)")
            debug = DEBUG_PORT.get(found.language)
            if debug:
                service["ports"] = [f"127.0.0.1:{debug}:{debug}"]
            if found.language == "node":
                service["environment"] = {"NODE_OPTIONS": f"--inspect=0.0.0.0:{debug}"}
            elif found.language == "bun" and service.get("command"):
                service["command"] = [service["command"][0], f"--inspect=0.0.0.0:{debug}",
                                      *service["command"][1:]]
        services[process] = service
    return {"services": services}, notes


def _override_head(found: Detected) -> str:
    debug = DEBUG_PORT.get(found.language)
    how = {"python": f"start debugpy in the app (debugpy.listen((\"0.0.0.0\", {debug}))) and "
                     f"attach to 127.0.0.1:{debug}",
           "node": f"the inspector listens on 127.0.0.1:{debug} (chrome://inspect)",
           "bun": f"the inspector listens on 127.0.0.1:{debug}"}.get(found.language, "")
    return ("# Generated by `headway generate compose`: development only (compose reads it "
            "with compose.yaml).\n# The source is bind-mounted; the web process reloads on "
            "changes when Headway knows how.\n" + (f"# Debugger: {how}.\n" if how else ""))


def dump(data: dict[str, Any]) -> str:
    import yaml  # only when a file is written

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True  # the shared environment is written out in each service

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, width=100, default_flow_style=False)
