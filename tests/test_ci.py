"""CI pipelines: `headway generate ci` writes files that each provider's own schema accepts
(check-jsonschema's built-in schemas, offline), and the stages of the generated GitHub
workflow, run here in order, lint and test the example app, build and push its image to a
real registry and deploy it; a failing test stage stops the pipeline and names itself."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from headway.pipeline import providers, stages
from headway.spec.models import CISpec
from tests.conftest import App
from tests.test_containers import REGISTRY_PASSWORD, base_images, registry  # noqa: F401 - fixtures

SCHEMAS = {"github": ("vendor.github-workflows", ".github/workflows/headway.yml"),
           "gitea": ("vendor.github-workflows", ".gitea/workflows/headway.yml"),
           "gitlab": ("vendor.gitlab-ci", ".gitlab-ci.yml"),
           "azure": ("vendor.azure-pipelines", "azure-pipelines.yml")}
SECRET_NAMES = ("HEADWAY_MASTER_KEY", "HEADWAY_REGISTRY_PASSWORD", "HEADWAY_SSH_KEY")
PASSING_TESTS = '''import os
from pathlib import Path


def test_the_version_is_set() -> None:
    assert Path(__file__).parents[1].joinpath("VERSION").read_text().strip()


def test_headway_keeps_its_secrets_from_the_apps_tests() -> None:
    assert not [name for name in os.environ if name.startswith("HEADWAY_")]
'''


def validate(files: dict[str, Path]) -> dict[str, subprocess.CompletedProcess[str]]:
    """check-jsonschema with each provider's built-in schema, all at once (it starts slowly).
    nonunicode: the GitLab and Azure schemas hold patterns that regress's unicode mode
    rejects."""
    tool = Path(sys.executable).parent / "check-jsonschema"
    procs = {name: subprocess.Popen([str(tool), "--regex-variant", "nonunicode",
                                     "--builtin-schema", SCHEMAS[name][0], str(path)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, path in files.items()}
    done = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
    return done


def test_each_provider_file_validates_against_its_schema_and_names_secrets_only(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {name: f"value-of-{name.lower()}" for name in SECRET_NAMES}
    monkeypatch.setattr(app, "env", lambda: dict(os.environ, HEADWAY_HOME=str(app.home),
                                                 **values))
    files = {}
    for provider, (_, rel) in SCHEMAS.items():
        wrote = app.run("generate", "ci", "--provider", provider)
        assert f"wrote {rel}" in wrote.stdout
        files[provider] = app.dir / rel
    for provider, done in validate(files).items():
        assert done.returncode == 0, f"{provider}: {done.stdout}"
    for provider, path in files.items():
        text = path.read_text()
        assert not [v for v in values.values() if v in text], provider
        assert all(name in text for name in SECRET_NAMES), provider
        assert "headway ci run test" in text and "headway ci run deploy --env production" in text
    broken = app.dir / "broken.yml"  # the check is not vacuous: a typo fails it
    broken.write_text(files["github"].read_text().replace("runs-on:", "runs_on:"))
    assert validate({"github": broken})["github"].returncode == 1

    again = app.run("generate", "ci", "--provider", "gitlab", check=False)
    assert again.returncode == 2 and ".gitlab-ci.yml exists" in again.stderr
    assert "--force" in again.stderr
    assert app.run("generate", "ci", "--provider", "gitlab", "--force").returncode == 0
    unknown = app.run("generate", "ci", "--provider", "jenkins", check=False)
    assert unknown.returncode == 2
    assert "github, gitea, gitlab, azure" in unknown.stderr and "Traceback" not in unknown.stderr


def test_the_github_workflow_gates_production_and_rolls_back_by_hand(app: App) -> None:
    app.run("generate", "ci", "--provider", "github", "--branch", "trunk")
    flow = yaml.safe_load((app.dir / ".github/workflows/headway.yml").read_text())
    jobs = flow["jobs"]
    assert flow["on"]["push"] == {"branches": ["trunk"], "tags": ["v*"]}
    assert "pull_request" in flow["on"] and "workflow_dispatch" in flow["on"]
    runs = {name: [s["run"] for s in job["steps"] if "run" in s and "headway" in s["run"]
                   and "pip" not in s["run"]] for name, job in jobs.items()}
    assert runs["check"] == ["headway ci run lint", "headway ci run test"]
    assert runs["staging"] == ["headway ci run build", "headway ci run scan",
                               "headway ci run push", "headway ci run deploy --env staging"]
    assert runs["production"] == ["headway ci run deploy --env production"]
    assert jobs["production"]["environment"] == "production"
    assert "refs/tags/v" in jobs["production"]["if"] and jobs["production"]["needs"] == "check"
    assert "refs/heads/trunk" in jobs["staging"]["if"]
    assert "workflow_dispatch" in jobs["rollback"]["if"] and "rollback" in runs["rollback"][0]
    assert "secrets" not in json.dumps(jobs["check"])  # pull requests see no secret
    assert jobs["staging"]["env"]["HEADWAY_MASTER_KEY"] == "${{ secrets.HEADWAY_MASTER_KEY }}"



def test_gitlab_and_azure_gate_production_and_take_secrets_by_reference() -> None:
    pipeline = providers.Pipeline(branch="main", secrets=list(SECRET_NAMES),
                                  setup=providers.Setup(headway="headway==0.1.0"))
    lab = yaml.safe_load(providers.render("gitlab", pipeline))
    assert lab["production"]["rules"] == [
        {"if": '$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_TAG =~ /^v/', "when": "manual"}]
    assert lab["production"]["environment"]["name"] == "production"
    assert lab["production"]["allow_failure"] is False  # the pipeline waits, not skips
    assert lab["staging"]["script"][-1] == "headway ci run deploy --env staging"
    assert lab["rollback"]["rules"][0]["when"] == "manual"
    azure = yaml.safe_load(providers.render("azure", pipeline))
    stages_ = {s["stage"]: s for s in azure["stages"]}
    production = stages_["production"]["jobs"][0]
    assert production["environment"] == "production" and "deployment" in production
    assert "refs/tags/v" in stages_["production"]["condition"]
    deploy_steps = production["strategy"]["runOnce"]["deploy"]["steps"]
    step = next(s for s in deploy_steps if s.get("displayName") == "deploy")
    assert step["script"] == "headway ci run deploy --env production"
    assert step["env"]["HEADWAY_MASTER_KEY"] == "$(HEADWAY_MASTER_KEY)"
    assert "env" not in json.dumps(stages_["check"]["jobs"][0]["steps"])  # PRs: no secrets
    assert "&" not in providers.render("azure", pipeline).split("stages:")[1]  # no anchors

def test_a_failing_test_stage_stops_the_pipeline_and_names_it(app: App) -> None:
    unknown = app.run("ci", "run", "tset", check=False)
    assert unknown.returncode == 2 and "unknown stage 'tset'" in unknown.stderr
    assert "did you mean test?" in unknown.stderr

    missing = app.run("ci", "run", "test", check=False)  # the example has no tests
    assert missing.returncode == 2 and "stage test failed: no tests found" in missing.stderr
    assert '[ci] test = "pytest -q"' in missing.stderr

    (app.dir / "tests").mkdir()
    (app.dir / "tests" / "test_hello.py").write_text(
        "def test_arithmetic() -> None:\n    assert 1 + 1 == 3\n")
    failed = app.run("ci", "run", check=False)
    assert failed.returncode == 1, failed.stderr
    lines = failed.stdout.splitlines()
    assert lines[0].split()[:2] == ["lint", "ok"] and "ruff check ." in lines[0]
    assert lines[1].split()[:2] == ["test", "FAILED"] and len(lines) == 2  # build never ran
    assert "stage test failed: `python3 -m pytest -q` exited 1" in failed.stderr
    assert "assert 1 + 1 == 3" in failed.stderr  # the test's own output, on stderr

    app.configure(ci='test = ""\nlint = "python3 -c pass"')
    skipped = app.run("ci", "run", "lint", "test")
    assert skipped.stdout.splitlines()[1].split()[:2] == ["test", "skipped"]
    assert "python3 -c pass ([ci] lint)" in skipped.stdout

    app.configure(registry='server = "127.0.0.1:9"\ntls_verify = false')
    unbuilt = app.run("ci", "run", "push", check=False)
    assert unbuilt.returncode == 2, unbuilt.stderr
    assert "stage push failed: 127.0.0.1:9/hello:latest is not built" in unbuilt.stderr
    assert "headway ci run build push" in unbuilt.stderr


@pytest.mark.parametrize(("files", "lint", "test"), [
    ({"app.py": "", "pyproject.toml": "[tool.ruff]\n", "tests/test_a.py": ""},
     "ruff check .", "python3 -m pytest -q"),
    ({"app.py": "", "setup.cfg": "[flake8]\nmax-line-length = 100\n"}, "flake8 .", None),
    ({"package.json": json.dumps({"scripts": {"test": "jest", "lint": "eslint ."}})},
     "npm run lint", "npm test"),
    ({"package.json": json.dumps({"scripts": {"test": 'echo "Error: no test specified" && '
                                              "exit 1"}})}, None, None),
    ({"package.json": "{}", "bun.lockb": ""}, None, "bun test"),
])
def test_lint_and_test_commands_are_detected_from_the_apps_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str],
        lint: str | None, test: str | None) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # "installed" linters do not count here
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = [stages.lint_command(tmp_path, CISpec()).argv,
             stages.test_command(tmp_path, CISpec()).argv]
    assert [shlex.join(argv) if argv else None for argv in found] == [lint, test]


@pytest.mark.integration
@pytest.mark.parametrize("images", [False, True])
def test_the_generated_github_pipeline_runs_here_end_to_end(
        app: App, images: bool, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The check and staging jobs' `headway ci run` steps, in the file's order, and a real
    deploy; with `images`, a real podman build and push to a real registry, the password from
    the variable the file names. (The jobs' setup steps, pip installs, are the runner's: the
    app's tests here need nothing installed.)"""
    (app.dir / "tests").mkdir()
    (app.dir / "tests" / "test_hello.py").write_text(PASSING_TESTS)
    env = dict(os.environ, HEADWAY_HOME=str(app.home))
    if images:
        request.getfixturevalue("base_images")
        server = request.getfixturevalue("registry")
        app.configure(registry=f'server = "{server}"\ntls_verify = false\nusername = "ci"')
        env["HEADWAY_REGISTRY_PASSWORD"] = REGISTRY_PASSWORD
    monkeypatch.setattr(app, "env", lambda: env)
    app.run("generate", "ci", "--provider", "github")
    jobs = yaml.safe_load((app.dir / ".github/workflows/headway.yml").read_text())["jobs"]
    ran = []
    for job in ("check", "staging"):
        for step in jobs[job]["steps"]:
            argv = shlex.split(step.get("run", ""))
            if argv[:3] == ["headway", "ci", "run"]:
                done = app.run(*argv[1:], timeout=300)
                print(done.stdout)  # each stage with its time, shown with -s
                ran += [line.split()[:2] for line in done.stdout.splitlines()
                        if line.split()[:1] == [argv[3]]]
    image = "ok" if images else "skipped"
    assert ran == [["lint", "ok"], ["test", "ok"], ["build", image], ["scan", "ok"],
                   ["push", image], ["deploy", "ok"]]
    answer = httpx.get(app.url, timeout=5).json()
    assert answer["version"] == (app.dir / "VERSION").read_text().strip()
    releases = json.loads(app.run("--env", "staging", "releases", "--json").stdout)
    assert releases[0]["status"] == "active"
    app.run("--env", "staging", "destroy", "--yes")
    if images:
        tags = httpx.get(f"http://{server}/v2/hello/tags/list", timeout=5,
                         auth=("ci", REGISTRY_PASSWORD)).json()["tags"]
        assert "latest" in tags
        subprocess.run(["podman", "rmi", f"{server}/hello:latest"], capture_output=True,
                       check=False)
