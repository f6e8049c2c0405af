"""The router: HAProxy, owned by the agent, moved only through its runtime API."""

from headway.router.base import Backend, Router, ServerState, backend_name
from headway.router.haproxy import HAProxy

__all__ = ["Backend", "HAProxy", "Router", "ServerState", "backend_name"]
