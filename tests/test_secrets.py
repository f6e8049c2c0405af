"""Secrets: encrypted at rest, injected into instances, and absent from everything else:
the whole $HEADWAY_HOME (database included), logs, events, --json output and the process
table. A change of secret makes a new release. Real processes and HAProxy."""

from __future__ import annotations

import hashlib
import json
import os
import secrets as random
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from headway.secrets import Secret
from tests.conftest import App

WORKER = ("import hashlib, os, time\n"
          "print('token sha256', hashlib.sha256(os.environ['API_TOKEN'].encode()).hexdigest(),"
          " flush=True)\n"
          "time.sleep(3600)\n")


def set_secret(app: App, name: str, value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headway", "secrets", "set", name],
                          input=value, cwd=app.dir, env=app.env(), capture_output=True,
                          text=True, check=True)


def test_secret_type_never_prints_itself() -> None:
    s = Secret("hunter2")
    assert "hunter2" not in f"{s} {s!r} {[s]} {s:>20}"
    assert s.reveal() == "hunter2"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(s)


@pytest.mark.integration
def test_secrets_reach_the_app_and_leak_nowhere(app: App) -> None:
    token = f"tok-{random.token_hex(16)}"
    (app.dir / "worker.py").write_text(WORKER)
    app.configure(processes__worker='command = "python3 worker.py"',
                  processes__worker__health='path = ""\ninterval = "200ms"')
    said = set_secret(app, "API_TOKEN", token)
    assert token not in said.stdout + said.stderr
    outputs = [app.run("deploy"), app.run("status", "--json"), app.run("releases", "--json"),
               app.run("events", "--json"), app.run("secrets", "list", "--json")]
    assert json.loads(outputs[-1].stdout) == ["API_TOKEN"]
    time.sleep(1)
    logs = app.run("logs", "--process", "worker", "--json").stdout
    assert hashlib.sha256(token.encode()).hexdigest() in logs  # the app got the value
    outputs.append(app.run("logs"))
    for out in outputs:
        assert token not in out.stdout + out.stderr
    for path in app.home.rglob("*"):
        if path.is_file() and not path.is_socket():
            assert token.encode() not in path.read_bytes(), path
    table = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                           check=True).stdout
    assert token not in table
    assert (app.home / "master.key").stat().st_mode & 0o777 == 0o600
    assert app.run("secrets", "export").stdout.strip() == f"API_TOKEN={token}"


@pytest.mark.integration
def test_a_changed_secret_makes_a_new_release_and_rotation_keeps_values(app: App) -> None:
    set_secret(app, "API_TOKEN", "one")
    app.run("deploy")
    assert "nothing to do" in app.run("deploy").stdout
    set_secret(app, "API_TOKEN", "two")
    assert "release 2 is live" in app.run("deploy").stdout
    old_key = (app.home / "master.key").read_bytes()
    assert "re-encrypted" in app.run("secrets", "rotate-key").stdout
    assert (app.home / "master.key").read_bytes() != old_key
    assert app.run("secrets", "export").stdout.strip() == "API_TOKEN=two"
    app.run("secrets", "unset", "API_TOKEN")
    assert json.loads(app.run("secrets", "list", "--json").stdout) == []
    empty = subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "X"], input="",
                           cwd=app.dir, env=app.env(), capture_output=True, text=True,
                           check=False)
    assert empty.returncode == 2 and "empty value" in empty.stderr


@pytest.mark.integration
def test_a_wrong_master_key_is_a_clear_error(app: App, tmp_path: Path) -> None:
    set_secret(app, "API_TOKEN", "one")
    env = dict(app.env(), HEADWAY_MASTER_KEY="bm90IGEga2V5")
    bad = subprocess.run([sys.executable, "-m", "headway", "secrets", "export"], cwd=app.dir,
                         env=env, capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "HEADWAY_MASTER_KEY: not the base64 of 32 bytes" in bad.stderr
    other = dict(app.env(), HEADWAY_MASTER_KEY="A" * 43 + "=")
    wrong = subprocess.run([sys.executable, "-m", "headway", "secrets", "export"], cwd=app.dir,
                           env=other, capture_output=True, text=True, check=False)
    assert wrong.returncode == 2 and "does not decrypt with this master key" in wrong.stderr
    assert os.path.exists(app.home / "master.key")


@pytest.mark.integration
def test_config_show_masks_secrets_and_check_names_missing_ones(app: App) -> None:
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text().replace('runtime = "process"',
                                             'runtime = "process"\nsecrets = ["API_TOKEN"]'))
    app.configure(env='LOG = "info"\n[env.staging]\nLOG = "debug"')
    for command in (("config", "check"), ("deploy",)):
        missing = app.run(*command, check=False)
        assert missing.returncode == 2
        assert "app.secrets: API_TOKEN not set for --env production" in missing.stderr
    assert not (app.home / "router").exists()  # the deploy was refused before anything ran
    set_secret(app, "API_TOKEN", "s3cr3t-value")
    assert "valid for --env production" in app.run("config", "check").stdout
    shown = json.loads(app.run("--env", "staging", "config", "show", "--json").stdout)
    assert shown["env"] == {"LOG": "debug"} and shown["secrets"] == {"API_TOKEN": "[MISSING]"}
    shown = app.run("config", "show")
    assert "API_TOKEN = \"[REDACTED]\"" in shown.stdout and "s3cr3t-value" not in shown.stdout
    shown_toml = tomllib.loads(shown.stdout)  # TOML, not JSON inline objects or null
    assert shown_toml["env"] == {"LOG": "info"}
    assert shown_toml["processes"]["web"]["health"]["path"] == "/up"


class Crash(BaseException):
    """Stands for kill -9 at a chosen point: nothing after it runs."""


@pytest.mark.parametrize("crash_at", ["master.key.new", "commit", "master.key"])
def test_rotate_key_killed_at_any_point_leaves_a_key_that_opens_every_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: str) -> None:
    from click.testing import CliRunner

    from headway.cli.main import cli
    from headway.secrets import Vault, load_key
    from headway.store import Store

    home = tmp_path / "home"
    store = Store(home)
    Vault(store, load_key(home)).set("shop", "production", "API_TOKEN", Secret("t0ken"))
    old_key = (home / "master.key").read_bytes()
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == crash_at:  # killed just before this file is swapped in
            raise Crash
        real_replace(src, dst)

    def commit_then_crash(self: Vault, new_key: bytes) -> int:
        real_rotate(self, new_key)
        raise Crash

    real_rotate = Vault.rotate
    monkeypatch.setattr(os, "replace", replace)
    if crash_at == "commit":
        monkeypatch.setattr(Vault, "rotate", commit_then_crash)
    env = {"HEADWAY_HOME": str(home), "HEADWAY_MASTER_KEY": ""}
    with pytest.raises(Crash):
        CliRunner().invoke(cli, ["--app", "shop", "secrets", "rotate-key"], env=env,
                           catch_exceptions=False)
    monkeypatch.undo()
    result = CliRunner().invoke(cli, ["--app", "shop", "secrets", "export"], env=env)
    assert result.output == "API_TOKEN=t0ken\n", result.output
    assert not (home / "master.key.new").exists()
    assert ((home / "master.key").read_bytes() == old_key) == (crash_at == "master.key.new")
    assert (home / "master.key").stat().st_mode & 0o777 == 0o600
    result = CliRunner().invoke(cli, ["secrets", "rotate-key"], env=env)
    assert "1 secret versions re-encrypted" in result.output
    assert Vault(Store(home), load_key(home)).values("shop", "production")[
        "API_TOKEN"].reveal() == "t0ken"


def test_rotate_key_refuses_a_store_it_cannot_open_and_changes_nothing(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from headway.cli.main import cli
    from headway.errors import ConfigError
    from headway.secrets import Vault, load_key
    from headway.store import Store

    home = tmp_path / "home"
    store = Store(home)
    Vault(store, b"k" * 32).set("shop", "production", "API_TOKEN", Secret("t0ken"))
    key = load_key(home)  # a fresh key file: not the one the secret was set with
    result = CliRunner().invoke(cli, ["secrets", "rotate-key"],
                                env={"HEADWAY_HOME": str(home), "HEADWAY_MASTER_KEY": ""})
    assert isinstance(result.exception, ConfigError), result.output  # main() prints it, exit 2
    assert "does not decrypt with this master key: nothing was rotated" in str(result.exception)
    assert load_key(home) == key and not (home / "master.key.new").exists()
    assert Vault(store, b"k" * 32).values("shop", "production")["API_TOKEN"].reveal() == "t0ken"
