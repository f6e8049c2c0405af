"""headway.toml validation: defaults, overrides, and errors that name the key path."""

import pytest

from headway.errors import ConfigError
from headway.spec import parse_spec

MINIMAL = '''
[app]
name = "hello"
runtime = "process"

[processes.web]
command = "python3 app.py"
replicas = 2

[processes.web.health]
path = "/up"

[deploy]
strategy = "blue-green"

[router]
port = 18080
'''


def test_minimal_file_gets_the_documented_defaults() -> None:
    spec = parse_spec(MINIMAL)
    health = spec.processes["web"].health
    assert (health.interval, health.timeout, health.healthy_threshold) == (1.0, 2.0, 2)
    assert (spec.deploy.timeout, spec.deploy.drain_timeout, spec.deploy.keep_previous) == (
        60.0, 30.0, 600.0)
    assert spec.deploy.max_surge == 1


def test_environment_overrides_base_variables() -> None:
    spec = parse_spec(MINIMAL + '[env]\nLOG = "info"\nDEBUG = false\n[env.staging]\nLOG = "debug"\n')
    assert spec.environment("production") == {"LOG": "info", "DEBUG": "false"}
    assert spec.environment("staging") == {"LOG": "debug", "DEBUG": "false"}
    assert spec.environments() == ["staging"]


@pytest.mark.parametrize(("change", "message"), [
    (("strategy", "stratgy"), 'deploy.stratgy: unknown key; did you mean "strategy"?'),
    (('path = "/up"', 'interval = "fast"'),
     'processes.web.health.interval: \'fast\' is not a duration, e.g. "2s"'),
    (("replicas = 2", 'replicas = "two"'), "processes.web.replicas: 'two'"),
    (('"blue-green"', '"canary-ish"'), "deploy.strategy: 'canary-ish'"),
    (('path = "/up"', 'path = "up"'), "processes.web.health.path: 'up' must start with \"/\""),
    (("[processes.web]\n", "[processes.api]\n"), "processes.web.command: required key is missing"),
    (('name = "hello"', 'name = "Hello World"'), "app.name: 'Hello World'"),
    (("port = 18080", "port = 70000"), "router.port: 70000"),
])
def test_bad_values_name_the_key(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(MINIMAL.replace(*change), source="/srv/app/headway.toml")
    assert err.value.message.startswith("/srv/app/headway.toml: ")
    assert message in err.value.message


def test_invalid_toml_names_the_file() -> None:
    with pytest.raises(ConfigError, match="headway.toml: not valid TOML"):
        parse_spec("[app\nname=1")
