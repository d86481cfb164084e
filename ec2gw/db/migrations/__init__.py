"""Alembic migrations of the service's schema (see ec2gw/db/migrate.py)."""
