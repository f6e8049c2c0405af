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


@pytest.mark.parametrize(("change", "message"), [
    (("replicas = 2", "replicas = 0"), "processes.web.replicas: 0: the web process needs at least"),
    (('path = "/up"', 'path = "/up"\ntimeout = nan'), "processes.web.health.timeout: nan is not a finite"),
    (('path = "/up"', 'path = "/up"\ntimeout = inf'), "processes.web.health.timeout: inf is not a finite"),
    (('path = "/up"', 'path = "/up"\ninterval = "1e999s"'), "processes.web.health.interval: "),
    (('path = "/up"', 'path = "/up"\ninterval = "' + "9" * 400 + 's"'),
     "is not a finite duration"),
    (('strategy = "blue-green"', 'strategy = "blue-green"\ntimeout = -inf'), "deploy.timeout: "),
    (('strategy = "blue-green"', 'strategy = "blue-green"\ndrain_timeout = "400d"'),
     "deploy.drain_timeout: '400d' is longer than a year"),
    (("port = 18080", "port = 18080\nrequest_timeout = nan"), "router.request_timeout: nan is not a finite"),
    (("port = 18080", "port = 18080\nrequest_timeout = 0"), "router.request_timeout: must be"),
    (('path = "/up"', 'path = "/up\\nfrontend evil\\n  bind 127.0.0.1:1"'),
     "processes.web.health.path: '/up\\nfrontend evil"),
    (('path = "/up"', 'path = "/up health"'), "processes.web.health.path: '/up health': only URI"),
    (('path = "/up"', 'path = "/up\\n"'), "processes.web.health.path: "),
    (('path = "/up"', "path = \"/up'x\""), "processes.web.health.path: "),
    (('path = "/up"', 'path = "/up#x"'), "processes.web.health.path: "),
    (("port = 18080", 'port = 18080\nhosts = ["a.example.com", "b.example.com\\nbackend x"]'),
     "router.hosts: 'b.example.com\\nbackend x' is not a host name"),
    (("port = 18080", 'port = 18080\nhosts = ["shop example.com"]'), "router.hosts: "),
    (("port = 18080", 'port = 18080\nhosts = ["shop.example.com:80"]'), "router.hosts: "),
    (("port = 18080", 'port = 18080\naddress = "0.0.0.0\\n  bind 0.0.0.0:1"'),
     "router.address: '0.0.0.0\\n  bind 0.0.0.0:1' is not an IP address"),
    (("port = 18080", 'port = 18080\naddress = "localhost"'), "router.address: "),
    (("port = 18080", 'port = 18080\n[observe]\nmetrics_address = "127.0.0.1 x"'),
     "observe.metrics_address: "),
    (("port = 18080", 'port = 18080\n[observe]\nrouter_metrics_port = 18080'),
     "observe.router_metrics_port: 18080 is already router.port"),
    (("[processes.web]", '[processes."web\\n"]\ncommand = "x"\n[processes.web]'),
     "is not a process name"),
    (("[processes.web]", '[processes.worker]\ncommand = "x"\nreplicas = 0\n[processes.web]'),
     None),
])
def test_values_that_would_break_the_router_or_hang_are_refused(
        change: tuple[str, str], message: str | None) -> None:
    text = MINIMAL.replace(*change)
    if message is None:  # a worker may be scaled to zero
        parse_spec(text)
        return
    with pytest.raises(ConfigError) as err:
        parse_spec(text, source="/srv/app/headway.toml")
    assert err.value.message.startswith("/srv/app/headway.toml: ")
    assert message in err.value.message


def test_hosts_and_addresses_that_haproxy_can_take_are_accepted() -> None:
    spec = parse_spec(MINIMAL.replace("port = 18080", 'port = 18080\naddress = "::1"\n'
                                      'hosts = ["Shop.Example.com", "localhost", "a-1.b2.io"]'))
    assert spec.router.address == "::1"
    path = parse_spec(MINIMAL.replace('path = "/up"', 'path = "/health/live?full=1&x=%20"'))
    assert path.processes["web"].health.path == "/health/live?full=1&x=%20"


def test_errors_name_the_line_and_a_value_typo_gets_did_you_mean() -> None:
    text = MINIMAL.replace('"blue-green"', '"blue-gren"').replace(
        "replicas = 2", "replicas = 2\nreplica = 3")
    with pytest.raises(ConfigError) as err:
        parse_spec(text, source="headway.toml")
    lines = text.splitlines()
    key_line = lines.index("replica = 3") + 1
    value_line = lines.index('strategy = "blue-gren"') + 1
    message = err.value.message
    assert ('processes.web.replica: unknown key; did you mean "replicas"? (known: autoscale, command, '
            in message) and f"(headway.toml:{key_line})" in message
    assert ("deploy.strategy: 'blue-gren': Input should be 'rolling', 'blue-green' or 'canary'; "
            f'did you mean "blue-green"? (headway.toml:{value_line})') in message


def test_an_error_without_a_line_in_the_text_names_none() -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec('[app]\nname = "hello"\n', source="headway.toml")
    assert err.value.message == "headway.toml: processes: required key is missing"
