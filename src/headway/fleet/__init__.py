"""Deploys to servers over SSH: the control machine builds one artifact, ships it to every
host in [servers], and runs each host's own Headway there (its own agent, HAProxy and store),
in batches, under one fleet lock, undoing the switched hosts when one fails.
Never prints, and never puts a secret in argv or a log line: secrets travel on ssh's stdin."""

from __future__ import annotations

from headway.fleet.hosts import Host, fleet_hosts

__all__ = ["Host", "fleet_hosts"]
