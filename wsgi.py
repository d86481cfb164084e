"""WSGI entry point: `gunicorn wsgi:app` serves both endpoints from EC2GW_* settings."""
