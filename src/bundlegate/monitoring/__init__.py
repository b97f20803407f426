"""Monitoring after deploy: payload log, drift against the bundle's reference, feedback (``monitor``).

The package imports nothing itself, so the payload log's writer process
(``python -m bundlegate.monitoring.payload_writer``) loads only what it uses.
"""
