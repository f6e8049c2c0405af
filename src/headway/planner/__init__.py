"""The planner: a pure function from (spec, observed state) to the ordered steps of a deploy."""

from headway.planner.plan import Step, plan_deploy

__all__ = ["Step", "plan_deploy"]
