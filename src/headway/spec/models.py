"""Typed models of headway.toml. They reject unknown keys and bad values; the config
reference in the README is generated from their field descriptions, so they cannot drift.
Nothing here touches the disk or the network."""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
NAME = r"^[a-z][a-z0-9-]{0,39}$"
RECORD = "record"  # validation context: a release's recorded spec (see Spec.of_record)
MAX_DURATION = 366 * 86400.0  # a year: longer is a typo, and time arithmetic stays finite
# What HAProxy may be given: an HTTP path of URI characters only (no space, control character,
# quote, backslash or "#", which would end or comment out the config line), host names.
URI_PATH = re.compile(r"^/[A-Za-z0-9\-._~!$&()*+,;=:@%/?]*$")
HOST = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
                  r"(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$", re.IGNORECASE)


def parse_duration(value: object) -> float:
    """'200ms', '2s', '10m', '1h' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration, e.g. \"2s\"")  # noqa: TRY004 - pydantic
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration, e.g. \"2s\"")
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration, e.g. \"2s\"")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative; a duration must be >= 0")
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than a year; e.g. \"2s\", \"10m\"")
    return seconds


def ip_address(value: str) -> str:
    """An IP address to bind (HAProxy and the agent's /metrics): nothing else reaches a bind."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address, e.g. \"0.0.0.0\" or "
                         "\"127.0.0.1\"") from None


Duration = Annotated[float, BeforeValidator(parse_duration)]
EnvValue = str | int | float | bool


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class HealthSpec(Model):
    """How Headway decides an instance is healthy."""

    path: str | None = Field(
        "/", description='HTTP path probed with GET; "" for workers (healthy = still running)'
    )
    expect: Literal["2xx", "below-500"] = Field(
        "2xx", description='answers that count as healthy: "2xx" (2xx or 3xx), or "below-500" '
        "(the app answers at all); default: below-500 when `path` is not set, else 2xx")
    interval: Duration = Field(1.0, description="time between probes")
    timeout: Duration = Field(2.0, description="how long one probe may take")
    healthy_threshold: int = Field(2, ge=1, le=100, description="consecutive successes to be healthy")
    restart_after: Duration = Field(30.0, description="the agent replaces a running instance "
                                    "that has failed its health check this long")

    @model_validator(mode="before")
    @classmethod
    def _expect(cls, data: object) -> object:
        # no health route named: any HTTP answer below 500 on / shows the app is serving
        if isinstance(data, dict) and "expect" not in data:
            return {**data, "expect": "2xx" if "path" in data else "below-500"}
        return data

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value and not value.startswith("/"):
            raise ValueError(f'{value!r} must start with "/", e.g. "/up"')
        if value and not URI_PATH.fullmatch(value):
            raise ValueError(f"{value!r}: only URI characters (no spaces, control characters, "
                             'quotes, backslashes or "#"), e.g. "/up"')
        return value or None


class AutoscaleSpec(Model):
    """Kubernetes: a HorizontalPodAutoscaler for the process (`headway generate kubernetes`)."""

    min: int = Field(ge=1, le=1000, description="fewest replicas")
    max: int = Field(ge=1, le=1000, description="most replicas")
    cpu: int = Field(70, ge=1, le=1000, description="target CPU use, percent of `cpus`")

    @model_validator(mode="after")
    def _range(self) -> AutoscaleSpec:
        if self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}")
        return self


class ProcessSpec(Model):
    """One process type of the app: `web` receives HTTP traffic, others are workers."""

    command: str = Field(description="command line; gets $PORT (web) and the [env] variables")
    replicas: int = Field(1, ge=0, le=64, description="how many instances run")
    stop_timeout: Duration = Field(10.0, description="SIGTERM, then SIGKILL after this long")
    health: HealthSpec = Field(HealthSpec.model_validate({}), description="health check")
    memory: str | None = Field(None, pattern=r"^\d+[kmg]?$", description="containers: memory "
                               "limit, e.g. \"512m\"")
    cpus: float | None = Field(None, gt=0, description="containers: CPU limit, e.g. 0.5")
    read_only: bool = Field(False, description="containers: read-only root filesystem "
                            "(/tmp stays writable)")
    autoscale: AutoscaleSpec | None = Field(None, description="Kubernetes: { min, max, cpu } "
                                            "for a HorizontalPodAutoscaler (needs `cpus`)")

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty, e.g. \"python3 app.py\"")
        return value


class AppSpec(Model):
    """The application."""

    name: str = Field(pattern=NAME, description="app name: lowercase letters, digits, dashes")
    runtime: Literal["auto", "process", "podman", "docker", "kubernetes"] = Field(
        "auto", description="where instances run; auto = podman when it works, else docker "
        "when its daemon answers, else process; kubernetes = [kubernetes] context's cluster"
    )
    path: str = Field(".", description="app folder, relative to headway.toml")
    secrets: list[str] = Field(default_factory=list,
                               description="secret names that must be set before a deploy")


class AnalysisSpec(Model):
    """When the judge fails a release: each check is one-sided at `confidence`."""

    max_error_rate: float = Field(0.01, ge=0, le=1, description="5xx share allowed (0.01 = 99% ok)")
    max_p99: Duration = Field(0.5, description="p99 latency allowed")
    max_error_increase: float = Field(0.01, ge=0, le=1,
                                      description="5xx share allowed above the stable release's")
    max_latency_ratio: float = Field(1.5, ge=1, description="p99 allowed, as a multiple of stable's")
    max_p99_increase: Duration = Field(0.1, description="p99 allowed above stable's: slower "
                                       "fails only past both this and the ratio")
    confidence: float = Field(0.99, gt=0.5, lt=1, description="how sure a failure must be")
    min_requests: int = Field(50, ge=1, description="requests needed (each side) to pass a step")


class CanarySpec(Model):
    """Canary: the traffic shares it goes through, each watched by the judge."""

    steps: list[int] = Field([10, 50, 100], description="percent of requests to the canary")
    pause: Duration = Field(10.0, description="least time watched at each step")
    max_wait: Duration = Field(300.0, description="too little traffic for this long: move on")
    manual: bool = Field(False, description="wait for `headway promote` at each step")
    analysis: AnalysisSpec = Field(AnalysisSpec(), description="judge limits")

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        if not value or any(not 0 < v <= 100 for v in value) or value != sorted(set(value)):
            raise ValueError(f"{value}: increasing percentages in 1..100, e.g. [10, 50, 100]")
        return value if value[-1] == 100 else [*value, 100]


class DeploySpec(Model):
    """How a new release replaces the running one."""

    strategy: Literal["rolling", "blue-green", "canary"] = Field(
        "blue-green", description="rolling | blue-green | canary")
    timeout: Duration = Field(60.0, description="a release not healthy within this fails")
    drain_timeout: Duration = Field(30.0, description="longest wait for in-flight requests")
    keep_previous: Duration = Field(600.0, description="keep the previous release warm this long")
    max_surge: int = Field(1, ge=1, le=64, description="rolling: instances replaced per batch")
    keep_releases: int = Field(10, ge=2, le=1000, description="release folders kept for "
                               "rollback; older retired and failed ones are deleted")
    analysis: Duration = Field(0.0, description="blue-green: judge the new release this long "
                               "after the switch and switch back on a breach; 0 = off")
    fallback_after: Duration = Field(10.0, description="a live release with no healthy "
                                     "instance this long goes back to the warm previous one")
    canary: CanarySpec = Field(CanarySpec(), description="canary steps and judge")
    hosts_in_parallel: int = Field(1, ge=1, le=100, description="[servers]: hosts deployed at "
                                   "once; the first that fails stops the rollout")


LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


def absolute_path(value: str | None) -> str | None:
    """A file on the host the agent reads (it runs beside no app folder): an absolute path."""
    if value is not None and (not value.startswith("/") or "\n" in value):
        raise ValueError(f"{value!r} is not an absolute path, e.g. \"/etc/ssl/private/shop.pem\"")
    return value


class AcmeSpec(Model):
    """Where `[router] tls = "acme"` gets its certificates: any ACME server (HTTP-01)."""

    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                              description="contact for the ACME account (expiry notices)")
    directory: str = Field(LETS_ENCRYPT, pattern=r"^https?://\S+$",
                           description="ACME directory URL (Let's Encrypt by default)")
    ca_bundle: Annotated[str | None, AfterValidator(absolute_path)] = Field(
        None, description="PEM file of CAs to trust for the ACME server's own HTTPS (a private "
        "ACME server), absolute path")


class TlsFilesSpec(Model):
    """A certificate the user brings (absolute paths on the host; re-read when they change)."""

    cert: Annotated[str, AfterValidator(absolute_path)] = Field(
        description="PEM certificate chain")
    key: Annotated[str, AfterValidator(absolute_path)] = Field(description="its PEM private key")


class RouterSpec(Model):
    """Where users' HTTP traffic arrives (HAProxy, shared by every app on the host)."""

    port: int = Field(80, ge=1, le=65535, description="port HAProxy listens on")
    address: str = Field("0.0.0.0", description="address HAProxy binds")
    hosts: list[str] = Field(default_factory=list, description="Host headers routed to this app")
    default: bool = Field(False, description="receive requests whose Host matches no app")
    request_timeout: Duration = Field(60.0, description="longest wait for an instance's answer "
                                      "(HAProxy's server timeout)")
    tls: Literal["acme"] | TlsFilesSpec | None = Field(
        None, description='HTTPS: "acme" (certificates for `hosts` from [router.acme], renewed '
        'by the agent) or { cert = "/path", key = "/path" }; `port` then answers ACME '
        "challenges and redirects the rest to HTTPS")
    https_port: int = Field(443, ge=1, le=65535, description="port HAProxy serves HTTPS on "
                            "(with tls)")
    hsts: Duration | None = Field(None, description='with tls: Strict-Transport-Security '
                                  'max-age on HTTPS answers, e.g. "365d"')
    acme: AcmeSpec = Field(AcmeSpec())

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return ip_address(value)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not HOST.fullmatch(host):
                raise ValueError(f"{host!r} is not a host name (letters, digits, dashes and "
                                 'dots, no port), e.g. "shop.example.com"')
        return value

    @field_validator("request_timeout")
    @classmethod
    def _request_timeout(cls, value: float) -> float:
        if value < 0.001:
            raise ValueError("must be at least 1ms, e.g. \"60s\"")
        return value

    @model_validator(mode="after")
    def _tls(self) -> RouterSpec:
        if self.tls == "acme" and not self.hosts:
            raise ValueError('tls = "acme" needs the names to certify: hosts = '
                             '["shop.example.com"]')
        if self.tls and self.https_port == self.port:
            raise ValueError(f"https_port: {self.https_port} is also `port`; HTTPS needs a port "
                             "of its own (443 by default)")
        if self.hsts is not None and not self.tls:
            raise ValueError("hsts: needs tls (HSTS is sent on HTTPS answers only)")
        return self


class ObserveSpec(Model):
    """Prometheus endpoints on this host (one agent and one router serve every app)."""

    metrics_port: int = Field(9580, ge=0, le=65535, description="Headway's /metrics; 0 = off")
    metrics_address: str = Field("127.0.0.1", description="address of Headway's /metrics")
    router_metrics_port: int = Field(9581, ge=0, le=65535,
                                     description="HAProxy's own exporter at /metrics; 0 = off")
    request_log: bool = Field(True, description="per-request log to the agent (metrics, canary "
                              "judge); off only to measure its cost")
    dashboard: bool = Field(False, description="a web dashboard at / of the metrics address "
                            "(actions need `headway dashboard token`)")
    prometheus_url: str | None = Field(None, pattern=r"^https?://\S+$", description="runtime "
                                       "kubernetes, canary: the Prometheus the judge queries")
    prometheus_queries: dict[Literal["requests", "errors", "latency"], str] = Field(
        default_factory=dict, description="canary PromQL per release ($pod, $namespace, "
        "$window); unset: the defaults the README gives")

    @field_validator("metrics_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return ip_address(value)


class ReleaseSpec(Model):
    """The release phase: a command (migrations) run once per deploy, before traffic moves."""

    command: str | None = Field(None, description="e.g. \"alembic upgrade head\"; gets the "
                                "new release's code, [env] and secrets")
    timeout: Duration = Field(600.0, description="the deploy fails if it runs longer")
    backup: list[str] | None = Field(None, description="accessories and volumes backed up before "
                                     "the command; default: every postgres one, every volume")


class AccessorySpec(Model):
    """A PostgreSQL or Redis server the app uses, run by Headway next to it."""

    type: Literal["postgres", "redis"] = Field(description="postgres | redis")
    scheme: str | None = Field(None, pattern=r"^[a-z][a-z0-9+]*$", description="postgres: its "
                               "URL's scheme (default postgresql; Tortoise ORM wants postgres)")
    version: str | None = Field(None, description="major version, e.g. \"15\"; checked "
                                "against the installed server")
    database: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                                 description="postgres: database name (default: app name)")
    user: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                             description="postgres: role the app connects as (default: app name)")
    port: int = Field(0, ge=0, le=65535, description="loopback port; 0 = a free one, kept")
    url_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$", description="variable "
                                "with its URL (default DATABASE_URL / REDIS_URL), a secret")
    path: str | None = Field(None, description="data folder (default: under $HEADWAY_HOME)")
    external: bool = Field(False, description="Kubernetes: a managed server elsewhere; its URL "
                           "comes from a Secret instead of a StatefulSet")

    env: dict[str, Literal["url", "host", "port", "user", "password", "database"]] = Field(
        default_factory=dict, description="more variables from its parts, e.g. { DB_HOST = "
        "\"host\", DB_PASSWORD = \"password\" } (url, host, port, user, password, database); "
        "secrets like the URL")

    @property
    def env_name(self) -> str:
        return self.url_env or ("DATABASE_URL" if self.type == "postgres" else "REDIS_URL")


class BackupsSpec(Model):
    """Backups of the accessories: where, how often, how many are kept."""

    path: str | None = Field(None, description="folder (default: $HEADWAY_HOME/backups)")
    schedule: Duration | None = Field(None, description="the agent backs up every accessory "
                                      "and volume this often, e.g. \"24h\"; unset = on demand")
    keep_last: int = Field(7, ge=1, description="newest backups always kept")
    keep_daily: int = Field(7, ge=0, description="days for which the newest backup is kept")
    keep_weekly: int = Field(4, ge=0, description="weeks for which the newest backup is kept")
    copy_to: str | None = Field(None, description="second folder every backup is copied to")


class BuildSpec(Model):
    """Container images (podman and docker runtimes, `headway build`)."""

    engine: Literal["auto", "podman", "docker"] = Field("auto", description="what builds "
                                                        "images for `headway build`; auto = "
                                                        "podman when it works, else docker")
    base_image: str | None = Field(None, description="overrides the detected official base "
                                   "of a generated Containerfile, e.g. \"python:3.12-slim\"")
    containerfile: str | None = Field(None, description="\"generate\" (ignore the app's own), "
                                      "or a path in the app; default: the app's Containerfile or "
                                      "Dockerfile if it has one, else generated")
    platforms: list[str] = Field(default_factory=list, max_length=1,
                                 description="e.g. [\"linux/arm64\"] (one for now; needs "
                                 "emulation when not the host's); default: the host's")


class RegistrySpec(Model):
    """Where images are pushed and pulled (any OCI registry)."""

    server: str | None = Field(None, description="e.g. \"registry.example.com\" or "
                               "\"127.0.0.1:5000\"; unset = images stay on this host")
    repository: str | None = Field(None, description="image name in it (default: the app name)")
    username: str | None = Field(None, description="login name, if the registry wants one")
    password_secret: str = Field("REGISTRY_PASSWORD", description="secret holding the password")
    password_env: str = Field("HEADWAY_REGISTRY_PASSWORD",
                              description="else this environment variable")
    tls_verify: bool = Field(True, description="false for a plain-HTTP registry on loopback")
    sign_by: str | None = Field(None, description="GPG key (fingerprint or e-mail, in this "
                                "host's keyring) that signs every image Headway pushes; "
                                "signatures are kept in $HEADWAY_HOME/signatures")
    verify: bool = Field(False, description="pull each pushed image back through Headway's "
                         "own signature policy and refuse it, before anything starts, unless "
                         "signed by verify_key")
    verify_key: str | None = Field(None, pattern=r"^[0-9A-Fa-f]{40}$",
                                   description="fingerprint of the trusted key, in this "
                                   "host's GPG keyring (default: sign_by's key)")


class CISpec(Model):
    """`headway ci run`: the app's own checks, and where its pipeline deploys."""

    lint: str | None = Field(None, description="lint command, e.g. \"ruff check .\"; default: "
                             "ruff or flake8 (when configured or installed), a package.json lint "
                             "script; \"\" = no lint stage")
    test: str | None = Field(None, description="test command, e.g. \"pytest -q\"; default: "
                             "pytest when tests exist, `npm test` (a real test script), `bun "
                             "test`; \"\" = no test stage")
    env: str = Field("staging", pattern=NAME, description="environment `ci run deploy` deploys "
                     "to without --env")


def _severity(value: object) -> object:
    return "moderate" if isinstance(value, str) and value.lower() == "medium" else value


class ScanIgnoreSpec(Model):
    """An advisory `headway scan` does not count, for a reason, until a date."""

    id: str = Field(min_length=1, description="advisory id or alias, e.g. \"GHSA-462w-v97r-4m45\"")
    reason: str = Field(min_length=1, description="why it does not apply or can wait")
    until: datetime.date | None = Field(None, description="after this date it counts again")


class ScanSpec(Model):
    """`headway scan`: the release's packages against a local OSV database."""

    db: str | None = Field(None, description="folder or zip of OSV JSON files, relative to "
                           "headway.toml")
    fail_on: Annotated[Literal["low", "moderate", "high", "critical"] | None,
                       BeforeValidator(_severity)] = Field(
        None, description="scan fails on a finding this severe or worse (\"medium\" = "
        "moderate); unset = report only")
    ignore: list[ScanIgnoreSpec] = Field(default_factory=list,
                                         description="{id, reason, until} advisories not counted")
    max_age: Duration | None = Field(None, description="warn when the database's newest file "
                                     "is older than this, e.g. \"7d\"; unset = never")
    update_url: str = Field("https://osv-vulnerabilities.storage.googleapis.com/{ecosystem}/"
                            "all.zip", pattern=r"^https?://.*\{ecosystem\}",
                            description="where `headway scan --update` downloads each "
                            "ecosystem's OSV export ({ecosystem}: PyPI, npm, Debian)")


NOTIFY_EVENTS = ("deploy.started", "deploy.succeeded", "deploy.failed", "deploy.fallback",
                 "deploy.recovered", "rollback", "backup.failed", "backup.copy_failed",
                 "agent.restarted", "instance.replaced", "accessory.restarted", "analysis.passed",
                 "tls.failed")


class NotifySpec(Model):
    """Where the agent sends this app's deploy events (through apprise), after the fact."""

    urls: list[str] = Field(default_factory=list, description="apprise URLs, e.g. "
                            "\"json://hooks.example.com/deploys\", \"slack://T/B/C\", "
                            "\"mailtos://user:pass@example.com\"; \"secret:NAME\" reads one from "
                            "the app's secrets (a URL that holds a token)")
    events: list[str] = Field(default_factory=lambda: [
        "deploy.started", "deploy.succeeded", "deploy.failed", "deploy.fallback", "rollback",
        "backup.failed", "backup.copy_failed", "agent.restarted", "tls.failed"],
        description="which events are sent, of: " + ", ".join(NOTIFY_EVENTS))

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.fullmatch(r"secret:[A-Za-z_][A-Za-z0-9_]*|[a-z][a-z0-9+.-]*://\S+", url):
                raise ValueError(f"{url.split('://')[0]!r}...: an apprise URL "
                                 "(\"json://host/path\") or \"secret:NAME\"")
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        for kind in value:
            if kind not in NOTIFY_EVENTS:
                raise ValueError(f"{kind!r}: one of {', '.join(NOTIFY_EVENTS)}")
        return value


class KubernetesSpec(Model):
    """`headway generate kubernetes` / `helm`: what the cluster needs beyond the rest of the file."""

    namespace: str | None = Field(None, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
                                  description="namespace of every object; default: APP-ENV")
    context: str | None = Field(None, description="runtime kubernetes: the kubeconfig context "
                                "deployed to; default: its current-context")
    ingress_class: str | None = Field(None, description="ingressClassName of the Ingress; "
                                      "default: the cluster's default class")
    ingress_namespace: str = Field("ingress-nginx", description="namespace of the ingress "
                                   "controller: the only one the NetworkPolicy admits")
    cluster_issuer: str | None = Field(None, description="cert-manager ClusterIssuer: the "
                                       "Ingress gets TLS for [router] hosts")
    external_secrets: str | None = Field(None, description="External Secrets Operator "
                                         "ClusterSecretStore that holds the secrets; unset = "
                                         "you create the Secrets yourself")
    storage: str = Field("1Gi", pattern=r"^\d+(Ki|Mi|Gi|Ti)$", description="size of each "
                         "accessory's and volume's PersistentVolumeClaim")


SSH_TARGET = re.compile(r"^(?:([a-z_][a-z0-9_.-]{0,31})@)?([A-Za-z0-9][A-Za-z0-9.-]*|"
                        r"\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$")


def _ssh_target(value: str) -> str:
    match = SSH_TARGET.fullmatch(value)
    if not match or not 0 < int(match.group(3) or 22) < 65536:
        raise ValueError(f"{value!r} is not a host: [user@]address[:port], e.g. "
                         '"deploy@10.0.0.5" or "10.0.0.6:2222"')
    return value


SSHTarget = Annotated[str, BeforeValidator(lambda v: _ssh_target(str(v)))]


def _env_hosts(env: str, table: Any) -> Any:
    """[env.NAME.servers] checked where the error can name that table."""
    if not isinstance(table, dict):
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueError only
            f"env.{env}.servers: a table of roles, e.g. web = [\"10.0.0.5\"]")
    for role, hosts in table.items():
        if not isinstance(hosts, list):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError only
                f"env.{env}.servers.{role}: a list of hosts, e.g. [\"deploy@10.0.0.5\"]")
        for host in hosts:
            try:
                _ssh_target(str(host))
            except ValueError as exc:
                raise ValueError(f"env.{env}.servers.{role}: {exc}") from None
    return table


class SSHSpec(Model):
    """How this machine reaches the [servers] hosts (the system's OpenSSH client)."""

    user: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_.-]{0,31}$", description="login "
                             "user of a host that names none; default: ssh's own")
    port: int = Field(22, ge=1, le=65535, description="port of a host that names none")
    identity: str | None = Field(None, description="private key file (relative to headway.toml); "
                                 "default: ssh's own keys and agent")
    known_hosts: Literal["strict", "accept-new"] = Field(
        "strict", description="strict: only host keys `headway servers trust` recorded; "
        "accept-new: record a new host's key on first contact (a changed key is always refused)")
    jump: SSHTarget | None = Field(None, description="jump host, e.g. \"deploy@bastion:22\"")
    connect_timeout: Duration = Field(10.0, description="a host that does not answer within "
                                      "this (or stops answering for 3 times 2s) is unreachable")


class Spec(Model):
    """A whole headway.toml."""

    app: AppSpec
    processes: dict[str, ProcessSpec] = Field(description="process types, at least `web`")
    deploy: DeploySpec = Field(DeploySpec())  # frozen: sharing the default is safe
    router: RouterSpec = Field(RouterSpec())
    observe: ObserveSpec = Field(ObserveSpec())
    release: ReleaseSpec = Field(ReleaseSpec())
    accessories: dict[str, AccessorySpec] = Field(default_factory=dict,
                                                  description="databases and caches, by name")
    backups: BackupsSpec = Field(BackupsSpec())
    build: BuildSpec = Field(BuildSpec())
    registry: RegistrySpec = Field(RegistrySpec())
    ci: CISpec = Field(CISpec())
    scan: ScanSpec = Field(ScanSpec())
    kubernetes: KubernetesSpec = Field(KubernetesSpec())
    notify: NotifySpec = Field(NotifySpec())
    volumes: dict[str, str] = Field(default_factory=dict, description="NAME = \"PATH\" in the "
                                    "app folder (e.g. \"uploads\"): kept across releases, "
                                    "mounted into every instance and one-off command")
    secrets: dict[str, Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*:.+")]] = Field(
        default_factory=dict, description="secrets read at each deploy from outside: "
        "NAME = \"env:VAR\" or \"file:/path\"")
    env: dict[str, EnvValue | dict[str, EnvValue]] = Field(
        default_factory=dict,
        description="variables for every process; [env.<environment>] tables override them",
    )
    servers: dict[str, list[SSHTarget]] = Field(
        default_factory=dict, description="hosts per process role, deployed over SSH, e.g. web "
        "= [\"deploy@10.0.0.5\", \"10.0.0.6:2222\"]; unset = this machine")
    ssh: SSHSpec = Field(SSHSpec(), description="how the [servers] hosts are reached")
    # [env.NAME.servers]: that environment's hosts instead of [servers] (moved here on load)
    env_servers: dict[str, dict[str, list[SSHTarget]]] = Field(default_factory=dict,
                                                               exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _env_servers(cls, data: Any) -> Any:
        if isinstance(data, dict) and "env_servers" in data:
            raise ValueError("env_servers: unknown key; an environment's hosts go in "
                             "[env.NAME.servers]")
        if isinstance(data, dict) and isinstance(data.get("env"), dict):
            data = {**data, "env": dict(data["env"]), "env_servers": {}}
            for name, table in data["env"].items():
                if isinstance(table, dict) and "servers" in table:
                    data["env"][name] = {k: v for k, v in table.items() if k != "servers"}
                    data["env_servers"][name] = _env_hosts(name, table["servers"])
        return data

    @model_validator(mode="after")
    def _servers(self) -> Spec:
        for where, table in [("servers", self.servers),
                             *[(f"env.{n}.servers", t) for n, t in self.env_servers.items()]]:
            for role, hosts in table.items():
                if role not in self.processes:
                    raise ValueError(f"{where}.{role}: no [processes.{role}] "
                                     f"(declared: {', '.join(self.processes)})")
                if len(set(hosts)) != len(hosts):
                    raise ValueError(f"{where}.{role}: a host is listed twice")
        return self

    @classmethod
    def of_record(cls, release_spec: str) -> Spec:
        """The spec a release recorded (its `spec` JSON): it was checked when it was made, and
        on a fleet host that runs no web process ([servers] roles) it has web at 0 replicas."""
        import json

        return cls.model_validate(json.loads(release_spec)["spec"], context={RECORD: True})

    def running_only(self, processes: list[str]) -> Spec:
        """This spec on a fleet host that runs only `processes` ([servers] roles): the others
        at 0 replicas; without web, the host's router does not serve the app."""
        return self.model_copy(update={"processes": {
            name: proc if name in processes else proc.model_copy(update={"replicas": 0})
            for name, proc in self.processes.items()}})

    def serves_web(self) -> bool:
        return self.processes["web"].replicas > 0

    def servers_for(self, env: str) -> dict[str, list[str]]:
        """The hosts of one environment: [env.NAME.servers] when it has one, else [servers]."""
        return self.env_servers.get(env, self.servers)

    @field_validator("processes")
    @classmethod
    def _processes(cls, value: dict[str, ProcessSpec],
                   info: ValidationInfo) -> dict[str, ProcessSpec]:
        for name in value:
            if not re.fullmatch(NAME, name):
                raise ValueError(f"{name!r} is not a process name (lowercase letters, digits, dashes)")
        if "web" not in value:
            raise ValueError("needs a [processes.web] table: the process that receives HTTP traffic")
        if not value["web"].health.path:
            raise ValueError("processes.web.health.path must be set: the router needs a health check")
        if value["web"].replicas < 1 and not (info.context or {}).get(RECORD):
            raise ValueError(f"processes.web.replicas: {value['web'].replicas}: the web process "
                             "needs at least 1 instance, or the router has no server to send "
                             "requests to (use `headway destroy` to take the app down)")
        return value

    @model_validator(mode="after")
    def _env_names(self) -> Spec:
        for key in self.env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"env.{key}: not a valid variable or environment name")
        for key in self.secrets:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"secrets.{key}: not a valid variable name")
        seen: dict[str, str] = {}
        for name, acc in self.accessories.items():
            if not re.fullmatch(NAME, name):
                raise ValueError(f"accessories.{name}: lowercase letters, digits, dashes")
            if acc.type == "redis" and (acc.database or acc.user):
                raise ValueError(f"accessories.{name}: database and user are postgres keys")
            if acc.env_name in seen:
                raise ValueError(f"accessories.{name}.url_env: {acc.env_name} is already the URL "
                                 f"of accessories.{seen[acc.env_name]}; set url_env")
            seen[acc.env_name] = name
        for name, where in self.volumes.items():
            if not re.fullmatch(NAME, name):
                raise ValueError(f"volumes.{name}: lowercase letters, digits, dashes")
            parts = where.strip("/").split("/")
            if where.startswith("/") or not where.strip("/") or ".." in parts:
                raise ValueError(f"volumes.{name}: {where!r} must be a folder inside the app, "
                                 'e.g. "uploads" or "var/data"')
        taken: dict[str, str] = {}
        for name, acc in self.accessories.items():
            for var in acc.env:
                if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", var):
                    raise ValueError(f"accessories.{name}.env.{var}: not a variable name")
                if var in taken or var in seen:
                    raise ValueError(f"accessories.{name}.env.{var}: already set by "
                                     f"accessories.{taken.get(var) or seen[var]}")
                taken[var] = name
        ports: dict[int, str] = {}
        for key, port in (("router.port", self.router.port),
                          ("router.https_port", self.router.https_port if self.router.tls else 0),
                          ("observe.metrics_port", self.observe.metrics_port),
                          ("observe.router_metrics_port", self.observe.router_metrics_port)):
            if port and port in ports:  # HAProxy binds both and splits the traffic between them
                raise ValueError(f"{key}: {port} is already {ports[port]}; give each its own port")
            ports[port] = key
        for name in self.release.backup or []:
            if name not in self.accessories and name not in self.volumes:
                raise ValueError(f"release.backup: no accessory or volume {name!r} "
                                 f"(declared: {', '.join([*self.accessories, *self.volumes]) or 'none'})")
        return self

    def pre_release_backups(self) -> list[str]:
        if self.release.backup is not None:
            return self.release.backup
        return [n for n, a in self.accessories.items() if a.type == "postgres"] + [*self.volumes]

    def environment(self, name: str) -> dict[str, str]:
        """The effective variables for one environment: [env] overridden by [env.<name>]."""
        base = {k: _text(v) for k, v in self.env.items() if not isinstance(v, dict)}
        override = self.env.get(name)
        if isinstance(override, dict):
            base.update({k: _text(v) for k, v in override.items()})
        return base

    def environments(self) -> list[str]:
        return sorted(k for k, v in self.env.items() if isinstance(v, dict))


def _text(value: EnvValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
