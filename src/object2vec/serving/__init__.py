"""Serving: gunicorn + Flask ``/ping``, ``/invocations`` and ``/execution-parameters``.

``environment`` (settings from the environment) -> ``server`` (gunicorn, one model per worker) ->
``app`` (routes, errors) -> ``codec`` (wire format) and ``predictor`` (the model).
"""
