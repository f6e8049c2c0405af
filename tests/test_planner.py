"""The planner over faked running state: table-driven, exact steps."""

import pytest

from headway.planner import plan_deploy
from headway.spec import parse_spec
from headway.store import Instance


def spec(strategy: str, replicas: int = 2, surge: int = 1, worker: bool = False,
         extra: str = ""):
    text = extra + f'''
[app]
name = "a"
[processes.web]
command = "run"
replicas = {replicas}
[deploy]
strategy = "{strategy}"
max_surge = {surge}
'''
    if worker:
        text += '[processes.worker]\ncommand = "work"\n[processes.worker.health]\npath = ""\n'
    return parse_spec(text)


def running(*ids: str) -> list[Instance]:
    return [Instance(id=i, app="a", env="production", release=1,
                     process="worker" if i.startswith("w") else "web", port=1, argv=[], cwd="",
                     env_vars={}, log="", stop_timeout=1, desired="running", state="running")
            for i in ids]


def kinds(steps) -> list[str]:
    return [f"{s.kind}:{s.group or ','.join(s.groups)}:{s.count or ''}:{'+'.join(s.old)}"
            for s in steps]


@pytest.mark.parametrize(("the_spec", "live", "expected"), [
    (spec("blue-green"), [], [
        "start:web:2:", "wait_healthy:web::", "switch:web::", "activate:::"]),
    (spec("blue-green"), running("o1", "o2"), [
        "start:web:2:", "wait_healthy:web::", "switch:web::o1+o2", "wait_drained:::o1+o2",
        "park:::o1+o2", "activate:::"]),
    (spec("blue-green", worker=True), running("o1", "w1"), [
        "start:web:2:", "start:worker:1:", "wait_healthy:web,worker::", "switch:web::o1",
        "wait_drained:::o1", "park:::o1", "stop:::w1", "activate:::"]),
    (spec("rolling"), running("o1", "o2"), [
        "start:web.1:1:", "wait_healthy:web.1::", "switch:web.1::o1", "wait_drained:::o1",
        "stop:::o1",
        "start:web.2:1:", "wait_healthy:web.2::", "switch:web.2::o2", "wait_drained:::o2",
        "stop:::o2", "activate:::"]),
    (spec("rolling", replicas=3, surge=2), running("o1", "o2"), [
        "start:web.1:2:", "wait_healthy:web.1::", "switch:web.1::o1+o2",
        "wait_drained:::o1+o2", "stop:::o1+o2",
        "start:web.2:1:", "wait_healthy:web.2::", "switch:web.2::", "activate:::"]),
    (spec("canary"), running("o1", "o2"), [
        "start:web:2:", "wait_healthy:web::", "canary:web:10:o1+o2", "canary:web:50:o1+o2",
        "switch:web::o1+o2", "wait_drained:::o1+o2", "park:::o1+o2", "activate:::"]),
    (spec("canary"), [], [  # a first deploy has nothing to compare with
        "start:web:2:", "wait_healthy:web::", "switch:web::", "activate:::"]),
    (parse_spec('''[app]\nname = "a"\n[processes.web]\ncommand = "run"\n[deploy]
analysis = "30s"\n'''), running("o1"), [
        "start:web:1:", "wait_healthy:web::", "switch:web::o1", "wait_drained:::o1",
        "park:::o1", "analyze:web::o1", "activate:::"]),
    (spec("blue-green", extra='[release]\ncommand = "migrate"\n'), running("o1"), [
        "release:::", "start:web:2:", "wait_healthy:web::", "switch:web::o1",
        "wait_drained:::o1", "park:::o1", "activate:::"]),
    (spec("rolling", replicas=1), running("o1", "o2"), [
        "start:web.1:1:", "wait_healthy:web.1::", "switch:web.1::o1", "wait_drained:::o1",
        "stop:::o1", "switch:::o2", "wait_drained:::o2", "stop:::o2", "activate:::"]),
    # a fleet host of the worker role ([servers]): its workers replaced, nothing routed
    (spec("blue-green", worker=True).running_only(["worker"]), running("w1"), [
        "start:worker:1:", "wait_healthy:worker::", "stop:::w1", "activate:::"]),
    (spec("rolling", worker=True).running_only(["worker"]), running("o1", "w1"), [
        "start:worker:1:", "wait_healthy:worker::", "stop:::o1+w1", "activate:::"]),
    (spec("blue-green", worker=True).running_only(["web"]), running("o1", "w1"), [
        "start:web:2:", "wait_healthy:web::", "switch:web::o1", "wait_drained:::o1",
        "park:::o1", "stop:::w1", "activate:::"]),
])
def test_plan(the_spec, live, expected) -> None:
    assert kinds(plan_deploy(the_spec, live)) == expected


def test_every_step_describes_itself() -> None:
    for step in plan_deploy(spec("rolling", worker=True), running("o1", "w1")):
        assert step.describe()
