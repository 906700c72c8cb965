"""Fault-injection suite: real gateways, services, RabbitMQ and PostgreSQL under faults.

    .venv/bin/python -m chaos.run [--workflows 1000] [--reduced]

See chaos/README.md for what is measured and how.
"""
