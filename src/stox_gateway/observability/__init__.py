"""Logs (structlog), and later metrics and traces."""
