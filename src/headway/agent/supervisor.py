"""Makes running processes match the store's instances table: starts pending ones, restarts
crashed ones with backoff, stops (SIGTERM, then SIGKILL after stop_timeout) and removes the
ones no longer wanted. Instances run in their own session so they outlive an agent restart;
a new agent adopts them by (pid, start time). What an ended instance leaves behind (a killed
`podman run`'s container) is its runtime's to remove. As root, a process-runtime instance runs
as its app's own user (runtime.appuser), never as root; a container's is podman's to run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from headway.errors import HeadwayError
from headway.runtime import appuser
from headway.runtime.base import for_kind, instance_kind
from headway.secrets import reveal_env
from headway.store import Instance, Store, pid_alive, proc_start_time

MAX_BACKOFF = 30.0


class Supervisor:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.children: dict[int, subprocess.Popen[bytes]] = {}

    def tick(self) -> None:
        now = time.time()
        for inst in self.store.instances():
            alive = self._alive(inst)
            if inst.desired == "running":
                self._keep_running(inst, alive, now)
            else:
                self._stop(inst, alive, now)

    def _keep_running(self, inst: Instance, alive: bool, now: float) -> None:
        if alive:
            if inst.state != "running":
                self.store.set_instance(inst.id, state="running")
            return
        if inst.pid:  # it was running and is gone: a crash
            code = self._reap(inst.pid)
            ran = now - (inst.started or now)
            delay = 0.25 if ran > 30 else min(0.25 * 2 ** min(inst.restarts, 8), MAX_BACKOFF)
            self.store.set_instance(inst.id, state="backoff", pid=None, exit_code=code,
                                    restarts=inst.restarts + 1, next_start=now + delay)
            _log(inst, f"exited with code {code}; restarting in {delay:.2f}s")
        elif inst.state in {"pending", "backoff"} and now >= (inst.next_start or 0):
            self._spawn(inst, now)

    def _spawn(self, inst: Instance, now: float) -> None:
        argv = for_kind(instance_kind(inst), self.store).spawn_argv(inst)
        _log(inst, f"starting: {_describe(inst)}" if argv == inst.argv else
             f"taking over what still runs of it: {' '.join(argv)}")
        try:
            # decrypted here, at the last moment, into the child's environment only
            env = inst.env_vars | reveal_env(self.store, inst.app, inst.env, inst.secrets)
        except HeadwayError as exc:
            _log(inst, f"cannot read its secrets: {exc.message}")
            self.store.set_instance(inst.id, state="failed", exit_code=126)
            return
        try:
            user = appuser.ensure_user(inst.app) \
                if appuser.isolated() and instance_kind(inst) == "process" else None
        except HeadwayError as exc:
            _log(inst, f"cannot run as its app's user: {exc.message}")
            self.store.set_instance(inst.id, state="failed", exit_code=126)
            return
        with open(inst.log, "ab") as log:
            try:
                proc = subprocess.Popen(argv, cwd=inst.cwd, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True,
                                        user=user.uid if user else None,
                                        group=user.gid if user else None,
                                        extra_groups=[] if user else None)
            except OSError as exc:
                log.write(f"headway: cannot start {inst.argv[0]}: {exc.strerror}\n".encode())
                self.store.set_instance(inst.id, state="failed", exit_code=127)
                return
        self.children[proc.pid] = proc
        self.store.set_instance(inst.id, pid=proc.pid, pid_start=proc_start_time(proc.pid),
                                state="running", started=now)

    def _stop(self, inst: Instance, alive: bool, now: float) -> None:
        if not alive:
            if inst.pid:
                self._reap(inst.pid)
            if inst.desired == "removed" or inst.state != "stopped":  # once, not every tick
                for_kind(instance_kind(inst), self.store).remove(inst)  # e.g. its container
            if inst.desired == "removed":
                self.store.delete_instance(inst.id)
            elif inst.state != "stopped":
                self.store.set_instance(inst.id, state="stopped", pid=None)
            return
        assert inst.pid is not None
        if inst.state != "stopping":
            _signal(inst.pid, signal.SIGTERM)
            self.store.set_instance(inst.id, state="stopping", next_start=now + inst.stop_timeout)
            _log(inst, "stopping (SIGTERM)")
        elif now > (inst.next_start or now):
            _signal(inst.pid, signal.SIGKILL)
            _log(inst, f"did not stop within {inst.stop_timeout:g}s: SIGKILL")

    def _alive(self, inst: Instance) -> bool:
        if not inst.pid:
            return False
        child = self.children.get(inst.pid)
        if child is not None:
            return child.poll() is None
        return pid_alive(inst.pid, inst.pid_start)

    def _reap(self, pid: int) -> int | None:
        child = self.children.pop(pid, None)
        return child.poll() if child else None


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _describe(inst: Instance) -> str:
    """The command line; for a container, the image and the command, not podman's options."""
    argv = inst.argv
    image = next((n for n, word in enumerate(argv) if re.fullmatch(r"[0-9a-f]{64}", word)), None)
    if instance_kind(inst) == "process" or image is None:
        return " ".join(argv)
    return f"container of image {argv[image][:12]}: {' '.join(argv[image + 1:])}"


def _log(inst: Instance, message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        with open(inst.log, "a") as f:
            f.write(f"--- headway {stamp} {inst.id}: {message}\n")
    except OSError:
        pass
