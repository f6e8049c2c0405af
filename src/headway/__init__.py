"""Headway: ship a web app to production from one headway.toml."""

__version__ = "0.1.0"
