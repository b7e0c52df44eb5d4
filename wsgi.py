"""The WSGI entry point: ``gunicorn wsgi:app`` (settings from EVENTFLO_* variables)."""

from eventflo.app import create_app

app = create_app()
