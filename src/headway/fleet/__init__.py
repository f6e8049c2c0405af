"""Deploys to servers over SSH: the control machine builds one artifact, ships it to every
host in [servers], and runs each host's own Headway there (its own agent, HAProxy and store),
in batches, under one fleet lock, undoing the switched hosts when one fails.
Never prints, and never puts a secret in argv or a log line: secrets travel on ssh's stdin.
Imports nothing: every host starts `python -m headway.fleet.remote` several times per deploy,
and that start must not pay for the spec and pydantic (fleet.hosts imports them)."""
