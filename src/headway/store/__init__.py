"""State in SQLite under $HEADWAY_HOME: apps, releases, instances, deploy journal, locks, events."""

from headway.store.db import Instance, Release, Store, actor, home_dir, socket_dir
from headway.store.procs import pid_alive, proc_start_time

__all__ = ["Instance", "Release", "Store", "actor", "home_dir", "pid_alive", "proc_start_time", "socket_dir"]
