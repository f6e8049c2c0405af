"""The engine: runs a plan's steps, journals each one, undoes a failed deploy, and finishes or
undoes one whose command died."""

from headway.engine.engine import Engine, Outcome

__all__ = ["Engine", "Outcome"]
