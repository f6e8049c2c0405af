"""Exact rendering: HAProxy config, runtime-API commands, instance argv."""

from pathlib import Path

import pytest

from headway.errors import RouterError
from headway.router.base import Add, Backend, Drain, Maint, Ready, Remove, Weight
from headway.router.haproxy import commands, quote, render_config
from headway.runtime.process import expand


def test_config_routes_by_host_with_a_default_and_keeps_server_states() -> None:
    shop = Backend("be_shop_production", 80, "0.0.0.0", ["shop.example.com"], True, "/up", 1.0,
                   [("web-r1-a", 20000, "ready", 100), ("web-r0-b", 20001, "maint", 100)])
    blog = Backend("be_blog_production", 80, "0.0.0.0", ["Blog.example.com"], False, "/health",
                   0.5, [("web-r2-c", 20002, "drain", 100)])
    cfg = render_config([shop, blog], admin_socket=Path("/h/router/admin.sock"),
                        log_socket=Path("/h/router/log.sock"), exporter=("127.0.0.1", 9581))
    assert "  stats socket '/h/router/admin.sock' mode 600 level admin\n" in cfg
    assert "  log '/h/router/log.sock' len 1024 format raw local0\n" in cfg
    assert '  log-format "%b %s %ST %Ta"\n' in cfg
    assert ("frontend fe_router_metrics\n  bind '127.0.0.1:9581'\n  no log\n"
            "  http-request use-service prometheus-exporter if { path /metrics }\n") in cfg
    assert cfg.count("frontend fe_80\n") == 1
    assert ("  use_backend be_blog_production if { req.hdr(host),field(1,:),lower -m str "
            "'blog.example.com' }\n") in cfg
    assert "  default_backend be_shop_production\n" in cfg
    assert "http-check expect" not in cfg
    lenient = Backend("be_x_production", 80, "0.0.0.0", [], False, "/", 1.0, [],
                      health_expect="below-500")
    assert "  option httpchk GET '/'\n  http-check expect ! rstatus ^5\n" in render_config(
        [lenient], admin_socket=Path("/a"), log_socket=Path("/l"), exporter=None)
    pool = "pool-max-conn -1 pool-purge-delay 5s on-marked-down shutdown-sessions"
    assert (f"  server web-r1-a 127.0.0.1:20000 weight 100 check inter 1000 rise 1 fall 2 "
            f"{pool}\n") in cfg
    assert (f"  server web-r0-b 127.0.0.1:20001 weight 100 check inter 1000 rise 1 fall 2 "
            f"{pool} disabled\n") in cfg
    assert (f"  server web-r2-c 127.0.0.1:20002 weight 0 check inter 500 rise 1 fall 2 "
            f"{pool}\n") in cfg
    assert "  option httpchk GET '/health'\n" in cfg
    assert ("backend be_shop_production\n  balance roundrobin\n  timeout server 60000ms\n"
            "  timeout check 2000ms\n") in cfg
    assert "  retry-on conn-failure empty-response response-timeout\n" in cfg


def test_router_changes_become_runtime_api_commands() -> None:
    assert commands("be_a_production", Add("web-r1-x", 20000, 0.2)) == [(
        "add server be_a_production/web-r1-x 127.0.0.1:20000 weight 100 check inter 200 "
        "rise 1 fall 2 pool-max-conn -1 pool-purge-delay 5s on-marked-down shutdown-sessions")]
    assert commands("b", Ready("s")) == [
        "enable health b/s", "set weight b/s 100", "set server b/s state ready",
        "set server b/s health up"]
    assert commands("b", Ready("s", 7))[1] == "set weight b/s 7"
    assert commands("b", Weight("s", 7)) == ["set weight b/s 7"]
    assert commands("b", Drain("s")) == ["set server b/s state drain"]
    assert commands("b", Maint("s")) == ["set server b/s state maint"]
    assert commands("b", Remove("s")) == ["del server b/s"]


def test_request_and_health_timeouts_are_the_backends_server_and_check_timeouts() -> None:
    # without `timeout check` a check may take one interval: on a saturated machine healthy
    # servers were marked down and their sessions cut (rollback bench: 46 failed requests)
    be = Backend("be_x_production", 80, "0.0.0.0", [], False, "/up", 0.2, [],
                 request_timeout=2.5, health_timeout=3)
    cfg = render_config([be], admin_socket=Path("/a"), log_socket=None)
    assert ("backend be_x_production\n  balance roundrobin\n  timeout server 2500ms\n"
            "  timeout check 3000ms\n") in cfg


def test_a_newline_in_a_value_cannot_inject_config() -> None:
    """The spec refuses such values (tests/test_spec.py); the renderer refuses them too."""
    for evil in ("/up\nfrontend evil\n  bind 127.0.0.1:1", "/up'x", "/up\tx", "/up\rx"):
        be = Backend("be_x_production", 80, "0.0.0.0", [], False, evil, 1.0, [])
        with pytest.raises(RouterError, match="cannot be written into haproxy.cfg"):
            render_config([be], admin_socket=Path("/a"), log_socket=None)
    assert quote("/home/my apps/router/admin.sock") == "'/home/my apps/router/admin.sock'"
    assert quote("/up?a=$HOME") == "'/up?a=$HOME'"  # single quotes: HAProxy expands nothing


def test_command_is_split_without_a_shell_and_expands_only_instance_variables() -> None:
    env = {"PORT": "20001", "NAME": "a b"}
    assert expand("uvicorn app:app --port $PORT --name ${NAME} '$(rm -rf /)'", env) == [
        "uvicorn", "app:app", "--port", "20001", "--name", "a b", "$(rm -rf /)"]
