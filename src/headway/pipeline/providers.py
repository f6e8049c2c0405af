"""CI files for GitHub Actions, Gitea Actions, GitLab CI and Azure Pipelines, from one
provider-neutral description: pull requests run lint and test; the default branch also
builds, scans, pushes and deploys to staging; a v* tag deploys to production behind the
provider's environment approval; a manual run rolls back. Every step calls
`headway ci run STAGE` (or `headway rollback`), so the logic stays in tested Python.
Pure: returns text. Secrets appear only as references to the provider's secret store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROVIDERS = {"github": ".github/workflows/headway.yml", "gitea": ".gitea/workflows/headway.yml",
             "gitlab": ".gitlab-ci.yml", "azure": "azure-pipelines.yml"}
PYTHON = "3.11"
NODE = "20"
ROLLBACK = ('headway --env "$HEADWAY_ROLLBACK_ENV" rollback '
            '${HEADWAY_ROLLBACK_RELEASE:+"$HEADWAY_ROLLBACK_RELEASE"}')


@dataclass(frozen=True)
class Setup:
    """What a job installs before its steps: Headway always; the app's dependencies and
    lint/test tools in the check job only."""

    headway: str  # a pip requirement, e.g. "headway==0.1.0"
    node: str | None = None  # "npm" or "bun": the check job sets that tool up
    app: list[str] = field(default_factory=list)  # shell lines, from the repository root


@dataclass(frozen=True)
class Job:
    name: str
    steps: list[tuple[str, str]]  # (name, command line)
    environment: str | None = None
    deploys: bool = False  # gets the secrets, and the deploy job form where there is one


@dataclass(frozen=True)
class Pipeline:
    branch: str  # the default branch
    secrets: list[str]  # variable names, each from the provider's secret store
    setup: Setup
    runs_on: str = "ubuntu-latest"

    def jobs(self) -> list[Job]:
        ci = "headway ci run"
        return [Job("check", [("lint", f"{ci} lint"), ("test", f"{ci} test")]),
                Job("staging", [(s, f"{ci} {s}") for s in ("build", "scan", "push")]
                    + [("deploy", f"{ci} deploy --env staging")], "staging", True),
                Job("production", [("deploy", f"{ci} deploy --env production")], "production",
                    True),
                Job("rollback", [("rollback", ROLLBACK)], None, True)]


def render(provider: str, pipeline: Pipeline) -> str:
    import yaml  # only when a file is written: every other command starts without it

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True  # no &anchors: Azure Pipelines does not read them

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None  # shell lines stay readable
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    data = {"github": _github, "gitea": _github, "gitlab": _gitlab, "azure": _azure}[provider](
        pipeline)
    return _header(provider, pipeline) + yaml.dump(data, Dumper=Dumper, sort_keys=False,
                                                   width=100, default_flow_style=False)


def _header(provider: str, pipeline: Pipeline) -> str:
    store = {"github": "repository secrets (Settings > Secrets and variables > Actions)",
             "gitea": "repository secrets (Settings > Actions > Secrets)",
             "gitlab": "masked, protected CI/CD variables (Settings > CI/CD > Variables)",
             "azure": "secret pipeline variables (or a variable group)"}[provider]
    approval = {"github": "required reviewers on the `production` environment",
                "gitea": "the `production` environment (Gitea records it; it has no reviewers "
                         "yet)",
                "gitlab": "a manual job; make `production` a protected environment",
                "azure": "approvals and checks on the `production` environment"}[provider]
    return "\n".join([
        f"# Written by `headway generate ci --provider {provider}`. Each step calls",
        "# `headway ci run STAGE`: run the same stages locally with `headway ci run`.",
        f"# Secrets, from {store}:",
        f"#   {', '.join(pipeline.secrets)}",
        f"# Production deploys (v* tags) wait for {approval}.",
        "# A manual run with an environment (and optionally a release number) rolls back.", ""])


# GitHub and Gitea Actions -----------------------------------------------------------------------
def _github(p: Pipeline) -> dict[str, Any]:
    on_branch = "github.event_name == 'push' && github.ref == 'refs/heads/" + p.branch + "'"
    on_tag = "github.event_name == 'push' && startsWith(github.ref, 'refs/tags/v')"
    jobs: dict[str, Any] = {}
    for job in p.jobs():
        body: dict[str, Any] = {"name": job.name, "runs-on": p.runs_on}
        if job.name == "check":
            body["if"] = "github.event_name != 'workflow_dispatch'"
        elif job.name == "rollback":
            body["if"] = "github.event_name == 'workflow_dispatch'"
            body["environment"] = "${{ inputs.environment }}"
            body["concurrency"] = {"group": "headway-${{ inputs.environment }}",
                                   "cancel-in-progress": False}
        else:
            body["needs"] = "check"
            body["if"] = on_branch if job.name == "staging" else on_tag
            body["environment"] = job.environment
            body["concurrency"] = {"group": f"headway-{job.environment}",
                                   "cancel-in-progress": False}
        env = {n: "${{ secrets." + n + " }}" for n in p.secrets} if job.deploys else {}
        if job.name == "rollback":
            env |= {"HEADWAY_ROLLBACK_ENV": "${{ inputs.environment }}",
                    "HEADWAY_ROLLBACK_RELEASE": "${{ inputs.release }}"}
        if env:
            body["env"] = env
        body["steps"] = _github_setup(p.setup, check=job.name == "check") + [
            {"name": name, "run": line} for name, line in job.steps]
        jobs[job.name] = body
    return {"name": "headway",
            "on": {"pull_request": None,
                   "push": {"branches": [p.branch], "tags": ["v*"]},
                   "workflow_dispatch": {"inputs": {
                       "environment": {"description": "environment to roll back",
                                       "type": "choice", "options": ["staging", "production"],
                                       "default": "staging", "required": True},
                       "release": {"description": "release number to go back to (empty: the "
                                   "previous good one)", "type": "string", "required": False,
                                   "default": ""}}}},
            "permissions": {"contents": "read"},
            "jobs": jobs}


def _github_setup(setup: Setup, *, check: bool) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"uses": "actions/checkout@v4"},
        {"uses": "actions/setup-python@v5", "with": {"python-version": PYTHON}}]
    if check and setup.node == "npm":
        steps.append({"uses": "actions/setup-node@v4", "with": {"node-version": NODE}})
    if check and setup.node == "bun":
        steps.append({"uses": "oven-sh/setup-bun@v2"})
    steps.append({"name": "install headway", "run": _pip(setup.headway)})
    if check and setup.app:
        steps.append({"name": "install the app's dependencies", "run": "\n".join(setup.app)})
    return steps


def _pip(requirement: str) -> str:
    return f'python -m pip install "{requirement}"'


# GitLab CI ------------------------------------------------------------------------------------
def _gitlab(p: Pipeline) -> dict[str, Any]:
    mr = '$CI_PIPELINE_SOURCE == "merge_request_event"'
    branch = '$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH'
    tag = '$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_TAG =~ /^v/'
    manual = '$CI_PIPELINE_SOURCE == "web" && $HEADWAY_ROLLBACK_ENV'
    data: dict[str, Any] = {
        "workflow": {"rules": [{"if": rule} for rule in (mr, branch, tag, manual)]},
        "stages": [job.name for job in p.jobs()],
        "default": {"image": f"python:{PYTHON}",
                    "before_script": [_pip(p.setup.headway)]},
        "variables": {"HEADWAY_ROLLBACK_ENV": {"value": "", "description": "a manual pipeline "
                                               "with this set (staging or production) rolls "
                                               "back that environment"},
                      "HEADWAY_ROLLBACK_RELEASE": {"value": "", "description": "the release to "
                                                   "go back to (empty: the previous good one)"}}}
    for job in p.jobs():
        body: dict[str, Any] = {"stage": job.name}
        if job.name == "check":
            body["before_script"] = [_pip(p.setup.headway), *_gitlab_node(p.setup), *p.setup.app]
            body["rules"] = [{"if": mr}, {"if": branch}, {"if": tag}]
        elif job.name == "staging":
            body["rules"] = [{"if": branch}]
        elif job.name == "production":
            body["rules"] = [{"if": tag, "when": "manual"}]
            body["allow_failure"] = False  # the pipeline waits for the approval
        else:
            body["rules"] = [{"if": manual, "when": "manual"}]
            body["needs"] = []
        if job.environment:
            body["environment"] = {"name": job.environment, "deployment_tier": job.environment}
        elif job.name == "rollback":
            body["environment"] = {"name": "$HEADWAY_ROLLBACK_ENV"}
        if job.name in {"staging", "production"}:
            body["resource_group"] = job.environment
        body["script"] = [line for _, line in job.steps]
        data[job.name] = body
    return data


def _gitlab_node(setup: Setup) -> list[str]:
    if setup.node == "npm":
        return ["apt-get update -qq && apt-get install -y -qq nodejs npm"]
    if setup.node == "bun":
        return ["apt-get update -qq && apt-get install -y -qq nodejs npm", "npm install -g bun"]
    return []


# Azure Pipelines ------------------------------------------------------------------------------
def _azure(p: Pipeline) -> dict[str, Any]:
    rollback = "${{ parameters.rollback }}"
    not_manual = f"eq('{rollback}', 'none')"
    branch = (f"and(succeeded(), {not_manual}, ne(variables['Build.Reason'], 'PullRequest'), "
              f"eq(variables['Build.SourceBranch'], 'refs/heads/{p.branch}'))")
    tag = (f"and(succeeded(), {not_manual}, ne(variables['Build.Reason'], 'PullRequest'), "
           "startsWith(variables['Build.SourceBranch'], 'refs/tags/v'))")
    stages: list[dict[str, Any]] = []
    for job in p.jobs():
        steps = _azure_setup(p.setup, check=job.name == "check")
        env = {n: f"$({n})" for n in p.secrets} if job.deploys else {}
        if job.name == "rollback":
            env |= {"HEADWAY_ROLLBACK_ENV": rollback,
                    "HEADWAY_ROLLBACK_RELEASE": "${{ parameters.release }}"}
        steps += [{"script": line, "displayName": name, **({"env": env} if env else {})}
                  for name, line in job.steps]
        stage: dict[str, Any] = {"stage": job.name}
        if job.name == "check":
            stage["condition"] = not_manual
            stage["jobs"] = [{"job": "check", "pool": {"vmImage": p.runs_on}, "steps": steps}]
        else:
            stage["dependsOn"] = [] if job.name == "rollback" else ["check"]
            stage["condition"] = {"staging": branch, "production": tag}.get(
                job.name, f"ne('{rollback}', 'none')")
            stage["jobs"] = [{"deployment": job.name, "pool": {"vmImage": p.runs_on},
                              "environment": job.environment or rollback,
                              "strategy": {"runOnce": {"deploy": {"steps": steps}}}}]
        stages.append(stage)
    return {"trigger": {"branches": {"include": [p.branch]}, "tags": {"include": ["v*"]}},
            "pr": {"branches": {"include": ["*"]}},
            "parameters": [
                {"name": "rollback", "displayName": "roll back an environment (manual run)",
                 "type": "string", "default": "none",
                 "values": ["none", "staging", "production"]},
                {"name": "release", "displayName": "release to go back to (empty: the "
                 "previous good one)", "type": "string", "default": ""}],
            "stages": stages}


def _azure_setup(setup: Setup, *, check: bool) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"checkout": "self"},
        {"task": "UsePythonVersion@0", "inputs": {"versionSpec": PYTHON}}]
    if check and setup.node:
        steps.append({"task": "NodeTool@0", "inputs": {"versionSpec": f"{NODE}.x"}})
    if check and setup.node == "bun":
        steps.append({"script": "npm install -g bun", "displayName": "install bun"})
    steps.append({"script": _pip(setup.headway), "displayName": "install headway"})
    if check and setup.app:
        steps.append({"script": "\n".join(setup.app), "displayName": "install the app's "
                      "dependencies"})
    return steps
