"""The spec: headway.toml loaded into typed, validated models."""

from headway.spec.load import load_spec, parse_spec
from headway.spec.models import AppSpec, ProcessSpec, Spec

__all__ = ["AppSpec", "ProcessSpec", "Spec", "load_spec", "parse_spec"]
