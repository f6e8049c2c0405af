"""What to do with a deploy, rollback or fallback whose command died: finish it or undo it.
Pure: no I/O, no clock. The engine gathers what the journal recorded and what the live router
serves, asks `decide`, and carries the decision out (engine.Engine.recover)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["finish", "undo", "discard", "forget"]


@dataclass(frozen=True)
class Interrupted:
    """What was recorded and observed of one interrupted deploy.
    kind: deploy | rollback | fallback (the journal's). new: the release it was putting live,
    None when its record is gone. previous: the release live before it, None when there was
    none or its record is gone. serving: the releases with an instance in rotation now.
    new_status: the new release's status in the store ("" when its record is gone)."""

    kind: str
    new: int | None
    previous: int | None
    serving: frozenset[int]
    new_status: str = ""


@dataclass(frozen=True)
class Decision:
    """finish: make `new` live. undo: put `previous` back, stop `new`. discard: stop `new`
    (nothing to go back to). forget: neither release exists any more, only close the journal.
    fail_new: mark `new` failed ("interrupted")."""

    action: Action
    reason: str
    fail_new: bool = False

    @property
    def finished(self) -> bool:
        return self.action == "finish"


def decide(seen: Interrupted) -> Decision:
    """Finish only when the new release alone takes traffic (the switch happened and nothing
    moved back); otherwise go back to the previous release, which was good."""
    new, old, serving = seen.new, seen.previous, seen.serving
    if new is not None and new in serving and (old is None or old not in serving):
        return Decision("finish", f"release {new} alone is in rotation: the switch happened")
    if old is not None:
        why = (f"release {new} is not in rotation" if new is None or new not in serving
               else f"releases {new} and {old} are both in rotation")
        return Decision("undo", f"{why}: back to release {old}", fail_new=(
            new is not None and seen.kind == "deploy" and seen.new_status != "active"))
    if new is not None:
        return Decision("discard", f"release {new} is not in rotation and no release was "
                        "live before it", fail_new=True)
    return Decision("forget", "neither release exists any more")
