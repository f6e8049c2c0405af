"""Abuse and faults from issue 13, each refused or survived the way a user relies on: bad input
exits 2 naming the file and key (never a traceback, nothing recorded), and the router keeps
serving when an instance hangs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import App


def refused(app: App, *args: str, stdin: str | None = None) -> str:
    """Run the CLI, expect exit 2 and no traceback; return stderr."""
    result = subprocess.run([sys.executable, "-m", "headway", *args], cwd=app.dir, env=app.env(),
                            input=stdin, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


def edit(app: App, old: str, new: str) -> None:
    toml = app.dir / "headway.toml"
    assert old in toml.read_text()
    toml.write_text(toml.read_text().replace(old, new))


def test_web_with_zero_replicas_is_refused_by_deploy_and_config_check(app: App) -> None:
    edit(app, "replicas = 2", "replicas = 0")
    for command in (("deploy",), ("config", "check")):
        stderr = refused(app, *command)
        assert "headway.toml: processes.web.replicas: 0: the web process needs at least 1" \
            in stderr
    assert not (app.home / "router").exists()


@pytest.mark.parametrize("value", ["nan", "inf", '"1e999s"', '"' + "9" * 400 + 's"'])
def test_a_duration_that_never_ends_is_refused(app: App, value: str) -> None:
    app.configure(deploy=f"timeout = {value}")
    assert "headway.toml: deploy.timeout: " in refused(app, "deploy")
    assert not (app.home / "router").exists()


def test_a_newline_in_the_health_path_cannot_reach_haproxy(app: App) -> None:
    app.configure(processes__web__health='path = "/up\\nfrontend evil\\n  bind 127.0.0.1:1"')
    stderr = refused(app, "deploy")
    assert "headway.toml: processes.web.health.path: '/up\\nfrontend evil" in stderr
    assert not (app.home / "router").exists()


@pytest.mark.parametrize("name", ["../../etc", "a/b", "..", "my app", "café", "Shop", ""])
def test_app_names_that_are_not_names_are_refused(app: App, name: str) -> None:
    stderr = refused(app, "--app", name, "secrets", "set", "TOKEN", stdin="value")
    assert f"--app {name!r}: not an app name" in stderr
    assert not (app.home / "state.db").exists()  # nothing was recorded under that name


def test_a_folder_as_config_and_negative_log_lines_are_clear_errors(app: App) -> None:
    stderr = refused(app, "-c", str(app.dir), "status")
    assert f"{app.dir}: is a folder, not a headway.toml" in stderr
    assert f"-c {app.dir / 'headway.toml'}" in stderr
    assert "logs -n -5: a number of lines" in refused(app, "logs", "-n", "-5")


def test_an_env_name_close_to_a_declared_one_is_a_typo(app: App) -> None:
    app.configure(env='LOG = "info"\n[env.staging]\nLOG = "debug"')
    stderr = refused(app, "--env", "stagin", "config", "check")
    assert "--env stagin: no [env.stagin] table; did you mean --env staging?" in stderr
    assert "valid for --env qa" in app.run("--env", "qa", "config", "check").stdout


def test_config_check_refuses_what_deploy_refuses(app: App) -> None:
    edit(app, 'runtime = "process"', 'runtime = "process"\npath = "no-such-folder"')
    for command in (("config", "check"), ("deploy",)):
        assert "headway.toml: app.path: 'no-such-folder' (" in refused(app, *command)
        assert "does not exist" in refused(app, *command)
    edit(app, 'runtime = "process"\npath = "no-such-folder"', 'runtime = "docker"')
    for command in (("config", "check"), ("deploy",)):
        assert 'headway.toml: app.runtime: "docker" is not supported yet' in refused(app, *command)
    assert not (app.home / "router").exists()
