"""`headway generate kubernetes` and `headway generate helm`, checked offline: no Kubernetes
API server runs here. Every object the bundled examples, a spec using every Kubernetes key,
and init-generated corpus apps produce is validated in strict mode against the official
OpenAPI schemas that kubernetes-validate ships (1.29, 1.32 and its newest); each overlay is
rendered by `kubectl kustomize`; the Helm chart is rendered by headway.kube.gotemplate (no
`helm` binary can be installed here) with values.yaml and each values-ENV.yaml. No secret
value may appear in any file. Unit-level: the CLI runs in process except for the end-to-end
secret test."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

from headway.cli.main import cli
from headway.kube import gotemplate
from headway.kube.objects import args, cpu, cron, memory

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ("1.29.0", "1.32.0", f"{kubernetes_validate.latest_version()}.0")
CRDS = {"ExternalSecret"}  # not in Kubernetes' own schemas: checked for shape below
CORPUS = ("flask-shop", "express-pg", "worker-redis")
KUBECTL = shutil.which("kubectl")


def _kustomize_version() -> int:
    """The major version of kubectl's kustomize: the overlays use `resources: [../../base]`
    and `patches`, kustomize v4 and later (kubectl 1.21+); Debian's kubectl 1.20 has v2.0.3."""
    if KUBECTL is None:
        return 0
    done = subprocess.run([KUBECTL, "version", "--client", "-o", "json"], capture_output=True,
                          text=True, timeout=30, check=False)
    found = re.match(r"v(\d+)", json.loads(done.stdout or "{}").get("kustomizeVersion", ""))
    return int(found.group(1)) if found else 0


KUSTOMIZE = _kustomize_version()

FULL = """
[app]
name = "shop"
runtime = "kubernetes"
secrets = ["API_TOKEN"]

[processes.web]
command = "gunicorn -b $HOST:${PORT} shop.wsgi"
replicas = 2
memory = "512m"
cpus = 0.5
autoscale = { min = 2, max = 10, cpu = 60 }
[processes.web.health]
path = "/health"

[processes.worker-jobs]
command = "celery -A shop worker"
memory = "256m"

[release]
command = "python manage.py migrate --noinput"

[router]
hosts = ["shop.example.com", "www.example.com"]

[accessories.db]
type = "postgres"
version = "15"
env = { DB_HOST = "host", DB_PASSWORD = "password" }

[accessories.cache]
type = "redis"
external = true

[backups]
schedule = "6h"
keep_last = 5

[registry]
server = "registry.example.com"
username = "ci"

[kubernetes]
cluster_issuer = "letsencrypt-prod"
ingress_class = "nginx"
external_secrets = "vault"

[volumes]
media = "media"

[secrets]
SENTRY_DSN = "env:SENTRY_DSN"

[env]
DJANGO_SETTINGS_MODULE = "shop.settings"
DEBUG = false
[env.staging]
DEBUG = true
"""


# validation: kubernetes-validate's schemas and version rule, its validator cached per kind
# (kubernetes_validate.validate reads the 2 MB definitions file again on every call)
@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.Validator | None:
    schema_version = [v for v in kv.all_versions()
                      if kv.major_minor(v) <= kv.major_minor(version)][-1]
    folder = f"kubernetes-json-schema/v{schema_version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv.schema_contents(f"{folder}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        return None
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(_definitions(folder, version)) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _definitions(folder: str, version: str) -> Any:
    return kv.schema_contents(f"{folder}/_definitions.json", version)


def validate(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        _validate(json.dumps(obj, sort_keys=True))


@functools.cache
def _validate(text: str) -> None:  # an object met twice (two overlays, the chart) once
    for obj in [json.loads(text)]:
        if obj["kind"] in CRDS:
            assert obj["apiVersion"] == "external-secrets.io/v1"
            assert {"secretStoreRef", "target", "data"} <= set(obj["spec"])
            continue
        for version in VERSIONS:
            validator = _validator(version, obj["kind"], obj["apiVersion"])
            assert validator is not None, f"{obj['kind']} {obj['apiVersion']}: no schema in {version}"
            errors = [f"{'.'.join(map(str, e.path))}: {e.message}"
                      for e in validator.iter_errors(obj)]
            assert not errors, f"{obj['kind']} {obj['metadata']['name']} ({version}): {errors}"


def test_the_cached_validator_agrees_with_kubernetes_validate() -> None:
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"selector": {}, "template": {}, "replicas": "two", "bogus": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[0], strict=True)
    with pytest.raises(AssertionError, match="bogus"):
        validate([bad])


# helpers ----------------------------------------------------------------------------------------
def generate(config: Path, *argv: str, home: Path) -> Any:
    """The CLI in process (fast); `headway -c CONFIG generate ...`."""
    return CliRunner().invoke(cli, ["-c", str(config), "generate", *argv],
                              env={"HEADWAY_HOME": str(home)})


def exit_code(result: Any) -> int:
    """In process, a HeadwayError is raised, not exited: the code `headway` would exit with."""
    return int(getattr(result.exception, "exit_code", result.exit_code))


def kustomize(folder: Path) -> list[dict[str, Any]]:
    done = subprocess.run([KUBECTL or "kubectl", "kustomize", str(folder)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, f"kubectl kustomize {folder}: {done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def helm_render(chart: Path, values_file: str | None) -> list[dict[str, Any]]:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    if values_file:
        _merge(values, yaml.safe_load((chart / values_file).read_text()))
    context = {"Values": values, "Release": {"Name": "r", "Namespace": "ns"},
               "Chart": yaml.safe_load((chart / "Chart.yaml").read_text())}
    objects = []
    for template in sorted((chart / "templates").glob("*.yaml")):
        text = gotemplate.render(template.read_text(), context)
        objects += [d for d in yaml.safe_load_all(text) if d]
    gotemplate.render((chart / "templates" / "NOTES.txt").read_text(), context)
    return objects


def _merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _config(tmp_path: Path, name: str) -> Path:
    if name == "full":
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "headway.toml").write_text(FULL)
        return tmp_path / "full" / "headway.toml"
    if name.startswith("examples/"):
        return ROOT / name / "headway.toml"
    copy = tmp_path / name
    shutil.copytree(ROOT / "tests" / "corpus" / name, copy)
    init = CliRunner().invoke(cli, ["init", "--path", str(copy)], catch_exceptions=False)
    assert init.exit_code == 0, init.output
    return copy / "headway.toml"


# the main check -----------------------------------------------------------------------------
@pytest.mark.skipif(KUSTOMIZE < 4, reason="needs kubectl with kustomize v4 or later (kubectl "
                    "1.21+), for `kubectl kustomize`")
@pytest.mark.parametrize("name", ["examples/hello", "examples/node-hello", "full",
                                  *CORPUS])
def test_every_object_validates_and_every_overlay_renders(name: str, tmp_path: Path) -> None:
    config = _config(tmp_path, name)
    out, chart = tmp_path / "k8s", tmp_path / "chart"
    result = generate(config, "kubernetes", "--out", str(out), home=tmp_path / "home")
    assert result.exit_code == 0, result.output
    assert generate(config, "helm", "--out", str(chart), home=tmp_path / "home").exit_code == 0
    envs = sorted(p.name for p in (out / "overlays").iterdir())
    assert "production" in envs
    for env in envs:
        objects = kustomize(out / "overlays" / env)
        validate(objects)
        kinds = {o["kind"] for o in objects}
        assert {"Deployment", "Service", "ServiceAccount", "ConfigMap", "PodDisruptionBudget",
                "NetworkPolicy"} <= kinds
        assert {o["metadata"]["namespace"] for o in objects} == {f"{_app(config)}-{env}"}
        if (out / "overlays" / env / "release").is_dir():
            validate(kustomize(out / "overlays" / env / "release"))
        helm = helm_render(chart, f"values-{env}.yaml")
        validate(helm)
        assert _names(helm) == _names(objects) | _release(out / "overlays" / env, helm)
        assert _plain(helm) == _plain(objects)  # the same objects, not only the same names
    validate(helm_render(chart, None))


def _app(config: Path) -> str:
    return str(re.search(r'name = "([^"]+)"', config.read_text()).group(1))  # type: ignore[union-attr]


def _names(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def _plain(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """Objects without what only one of the two layouts adds (namespace, annotations) and
    without the release Job, named per image in the overlays."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: strip(v) for k, v in value.items() if k not in {"annotations", "namespace"}}
            return {k: v for k, v in out.items() if v != {} or k != "metadata"}
        return [strip(v) for v in value] if isinstance(value, list) else value
    return {(o["kind"], o["metadata"]["name"]): strip(o) for o in objects if o["kind"] != "Job"}


def _release(overlay: Path, helm: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The chart's hook Job is the overlay's release/ Job (named per image there)."""
    return {n for n in _names(helm) if n[0] == "Job"} if (overlay / "release").is_dir() else set()


@pytest.mark.skipif(KUSTOMIZE < 4, reason="needs kubectl with kustomize v4 or later")
def test_the_full_spec_makes_what_a_cluster_needs(tmp_path: Path) -> None:
    config = _config(tmp_path, "full")
    out = tmp_path / "k8s"
    assert generate(config, "kubernetes", "--out", str(out), home=tmp_path / "home").exit_code == 0
    objects = {(o["kind"], o["metadata"]["name"]): o for o in
               yaml.safe_load_all("---\n".join(p.read_text() for p in (out / "base").rglob("*.yaml")
                                               if p.name != "kustomization.yaml")) if o}
    web = objects["Deployment", "shop-web"]["spec"]
    assert "replicas" not in web  # the HPA owns it
    pod = web["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"},
                              "limits": {"memory": "512Mi"}}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] == 15  # stop_timeout 10 + the preStop sleep
    assert c["args"] == ["gunicorn", "-b", "$(HOST):$(PORT)", "shop.wsgi"]
    env = {e["name"]: e for e in c["env"]}
    assert env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "shop-secrets",
                                                             "key": "API_TOKEN"}
    assert env["DATABASE_URL"]["value"] == \
        "postgresql://shop:$(HEADWAY_DB_PASSWORD)@shop-db:5432/shop"
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "shop-secrets"  # external
    hpa = objects["HorizontalPodAutoscaler", "shop-web"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    ingress = objects["Ingress", "shop"]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ingress["spec"]["tls"][0]["hosts"] == ["shop.example.com", "www.example.com"]
    policy = objects["NetworkPolicy", "shop-web"]["spec"]["ingress"]
    assert policy[0]["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx"}}}]
    assert objects["NetworkPolicy", "shop-worker-jobs"]["spec"]["ingress"] == []
    assert ("StatefulSet", "shop-db") in objects and ("StatefulSet", "shop-cache") not in objects
    assert objects["CronJob", "shop-backup-db"]["spec"]["schedule"] == "0 */6 * * *"
    job = yaml.safe_load_all((out / "overlays/production/release/job.yaml").read_text())
    job = next(o for o in job if o["kind"] == "Job")
    assert "complete" in job["metadata"]["annotations"]["headway.dev/run-before"]
    external = list(yaml.safe_load_all((out / "overlays/staging/externalsecrets.yaml").read_text()))
    assert {e["spec"]["target"]["name"] for e in external} == {"shop-secrets", "shop-db-auth"}
    assert "kubectl -n shop-production wait --for=condition=complete" in \
        (out / "README.md").read_text()
    staging = kustomize(out / "overlays" / "staging")
    config_map = next(o for o in staging if o["kind"] == "ConfigMap")
    assert config_map["data"] == {"DEBUG": "true", "DJANGO_SETTINGS_MODULE": "shop.settings"}


def test_the_chart_runs_the_release_command_as_a_hook_and_has_every_tunable(
        tmp_path: Path) -> None:
    config = _config(tmp_path, "full")
    chart = tmp_path / "chart"
    assert generate(config, "helm", "--out", str(chart), home=tmp_path / "home").exit_code == 0
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert values["processes"]["web"]["autoscale"] == {"enabled": True, "min": 2, "max": 10,
                                                      "cpu": 60}
    assert values["processes"]["worker_jobs"]["replicas"] == 1
    assert values["image"]["repository"] == "registry.example.com/shop"
    assert values["ingress"]["hosts"] == ["shop.example.com", "www.example.com"]
    job = yaml.safe_load((chart / "templates" / "release-job.yaml").read_text().replace(
        "{{", "").replace("}}", ""))
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["apiVersion"] == "v2"
    # a tunable changed in a values file reaches the objects
    (chart / "values-big.yaml").write_text(yaml.safe_dump({
        "processes": {"web": {"autoscale": {"max": 40}}}, "ingress": {"hosts": ["a.example"]},
        "image": {"digest": "sha256:" + "a" * 64}}))
    objects = {(o["kind"], o["metadata"]["name"]): o for o in helm_render(chart, "values-big.yaml")}
    assert objects["HorizontalPodAutoscaler", "shop-web"]["spec"]["maxReplicas"] == 40
    assert [r["host"] for r in objects["Ingress", "shop"]["spec"]["rules"]] == ["a.example"]
    image = objects["Deployment", "shop-web"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/shop@sha256:" + "a" * 64
    (chart / "values-off.yaml").write_text(yaml.safe_dump({
        "processes": {"web": {"autoscale": {"enabled": False}}}, "ingress": {"enabled": False}}))
    kinds = {o["kind"] for o in helm_render(chart, "values-off.yaml")}
    assert "HorizontalPodAutoscaler" not in kinds and "Ingress" not in kinds


# secrets and bad input, through the real CLI ---------------------------------------------------
def _headway(cwd: Path, home: Path, *argv: str, stdin: str | None = None) -> Any:
    return subprocess.run([sys.executable, "-m", "headway", *argv], cwd=cwd, input=stdin,
                          env={**os.environ, "HEADWAY_HOME": str(home)}, capture_output=True,
                          text=True, timeout=120, check=False)


def test_no_secret_value_reaches_any_file(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(ROOT / "examples" / "hello", app)
    config = app / "headway.toml"
    config.write_text(config.read_text().replace('name = "hello"', 'name = "hello"\n'
                                                 'secrets = ["API_TOKEN"]')
                      + '\n[accessories.db]\ntype = "postgres"\nexternal = true\n')
    config.write_text(config.read_text() + "\n[env.staging]\n")
    home, value = tmp_path / "home", "s3cr3t-" + os.urandom(8).hex()
    for env, name, text in (("production", "API_TOKEN", value),
                            ("staging", "STAGING_ONLY", value + "-2")):
        result = CliRunner().invoke(cli, ["-c", str(config), "--env", env, "secrets", "set",
                                          name], input=text, env={"HEADWAY_HOME": str(home)})
        assert result.exit_code == 0, result.output
    done = _headway(app, home, "generate", "kubernetes", "--out", "k8s")  # the real CLI once
    assert done.returncode == 0, done.stderr
    assert value not in done.stdout + done.stderr
    for argv in (["generate", "helm", "--out", str(app / "chart")],
                 ["--env", "production", "generate", "kubernetes", "--out", str(app / "prod")]):
        result = generate(config, *argv[argv.index("generate") + 1:], home=home) \
            if argv[0] == "generate" else CliRunner().invoke(
                cli, ["-c", str(config), *argv], env={"HEADWAY_HOME": str(home)})
        assert result.exit_code == 0, result.output
        assert value not in result.output
    texts = {p: p.read_text() for d in ("k8s", "chart", "prod") for p in (app / d).rglob("*")
             if p.is_file()}
    assert not [p for p, text in texts.items() if value in text]
    base = (app / "k8s" / "base" / "process-web.yaml").read_text()
    assert "key: API_TOKEN" in base and "key: DATABASE_URL" in base
    assert not list((app / "prod" / "overlays").glob("staging"))  # --env: that one only
    deployment = next(d for d in yaml.safe_load_all(base) if d["kind"] == "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["STAGING_ONLY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert "optional" not in env["API_TOKEN"]["valueFrom"]["secretKeyRef"]


def test_an_hpa_without_requests_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(ROOT / "examples" / "hello", app)
    config = app / "headway.toml"
    config.write_text(config.read_text().replace(
        "replicas = 2", "replicas = 2\nautoscale = { min = 2, max = 5 }"))
    done = _headway(app, tmp_path / "home", "generate", "kubernetes", "--out", "k8s")
    assert done.returncode == 2
    assert "processes.web.autoscale" in done.stderr and "cpus" in done.stderr
    assert "Traceback" not in done.stderr and not (app / "k8s").exists()
    result = generate(config, "helm", "--out", str(app / "chart"), home=tmp_path / "home")
    assert exit_code(result) == 2 and not (app / "chart").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["generate", "kubernetes", "--env", "qa"], "--env qa: no such environment"),
    (["--env", "stagign", "generate", "kubernetes"], "no such environment"),
])
def test_an_unknown_environment_is_refused(tmp_path: Path, argv: list[str], message: str) -> None:
    config = tmp_path / "headway.toml"
    config.write_text((ROOT / "examples/hello/headway.toml").read_text() + "\n[env.staging]\n")
    result = CliRunner().invoke(cli, ["-c", str(config), *argv],
                                env={"HEADWAY_HOME": str(tmp_path / "home")})
    assert exit_code(result) == 2
    assert message in str(result.exception) or message in result.output


def test_a_folder_headway_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    config = ROOT / "examples/hello/headway.toml"
    for force in ([], ["--force"]):
        result = CliRunner().invoke(cli, ["-c", str(config), "generate", "kubernetes", "--out",
                                          str(out), *force],
                                    env={"HEADWAY_HOME": str(tmp_path / "home")})
        assert exit_code(result) == 2
    assert (out / "keep.txt").read_text() == "mine"


# units ----------------------------------------------------------------------------------------
def test_conversions() -> None:
    assert [memory(m) for m in ("512m", "1g", "64k", "1000")] == ["512Mi", "1Gi", "64Ki", "1000"]
    assert [cpu(c) for c in (0.5, 2, 0.0001)] == ["500m", "2000m", "1m"]
    assert [cron(s) for s in (300, 3600, 6 * 3600, 86400, 7 * 86400)] == [
        "*/5 * * * *", "0 */1 * * *", "0 */6 * * *", "30 3 * * *", "30 3 */7 * *"]
    assert args('node server.js --port ${PORT} --host "$HOST"') == [
        "node", "server.js", "--port", "$(PORT)", "--host", "$(HOST)"]


def test_the_template_renderer_refuses_what_it_does_not_know() -> None:
    assert gotemplate.render('{{- if .Values.a }}x: {{ .Values.b | quote }}{{ end }}',
                             {"Values": {"a": 1, "b": 2}}) == 'x: "2"'
    assert gotemplate.render("{{ range .Values.l }}[{{ . }}]{{ end }}",
                             {"Values": {"l": ["a", "b"]}}) == "[a][b]"
    with pytest.raises(ValueError, match="include"):
        gotemplate.render('{{ include "x" . }}', {"Values": {}})
    with pytest.raises(ValueError, match="end"):
        gotemplate.render("{{ if .Values.a }}x", {"Values": {}})


def test_generating_twice_writes_the_same_files(tmp_path: Path) -> None:
    """Two runs write the same files: output can be committed and diffed."""
    config = _config(tmp_path, "full")
    for out in ("a", "b"):
        assert generate(config, "kubernetes", "--out", str(tmp_path / out),
                        home=tmp_path / "home").exit_code == 0
    files = {p.relative_to(tmp_path / "a"): p.read_text() for p in (tmp_path / "a").rglob("*")
             if p.is_file()}
    assert files == {p.relative_to(tmp_path / "b"): p.read_text()
                     for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert json.dumps(sorted(map(str, files)))


def test_the_image_is_the_environments_live_release_by_digest_when_recorded(
        tmp_path: Path) -> None:
    from headway.kube import source
    from headway.spec.load import parse_spec
    from headway.store import Store

    spec = parse_spec(FULL)
    store = Store(tmp_path / "home")
    first = store.add_release("shop", "staging", digest="d1", root=tmp_path / "r", spec="{}")
    store.set_release("shop", "staging", first.number, status="active")
    assert source.image(spec, "staging", tmp_path / "home").reference == \
        "registry.example.com/shop:staging-1"
    digest = "sha256:" + "b" * 64
    second = store.add_release("shop", "staging", digest="d2", root=tmp_path / "r", spec="{}")
    Path(second.path).mkdir(parents=True)
    (Path(second.path) / source.IMAGE_FILE).write_text(json.dumps({"digest": digest}))
    store.set_release("shop", "staging", second.number, status="active")
    assert source.image(spec, "staging", tmp_path / "home").reference == \
        f"registry.example.com/shop@{digest}"
    assert source.image(spec, "production", tmp_path / "home").reference == \
        "registry.example.com/shop:latest"  # nothing built there yet
    assert source.image(spec, "staging", tmp_path / "nowhere").tag == "latest"
    assert not (tmp_path / "nowhere").exists()  # never creates a store


def test_router_tls_acme_gets_a_cert_manager_issuer(tmp_path: Path) -> None:
    from headway.kube.objects import Build, Image, ingress
    from headway.kube.values import Values
    from headway.spec.load import parse_spec

    text = FULL.replace('cluster_issuer = "letsencrypt-prod"\n', "").replace(
        'hosts = ["shop.example.com", "www.example.com"]',
        'hosts = ["shop.example.com", "www.example.com"]\ntls = "acme"')
    spec = parse_spec(text)
    made = ingress(Build(spec, Values(template=False), Image("x")))
    assert made["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert made["spec"]["tls"][0]["secretName"] == "shop-tls"
