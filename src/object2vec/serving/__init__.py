"""Serving: gunicorn + Flask ``/ping`` and ``/invocations``."""
