"""Accessories: the PostgreSQL and Redis servers an app uses, run next to it, and their
backups."""
