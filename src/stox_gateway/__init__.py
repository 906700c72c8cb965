"""Stox Gateway: workflow orchestration for product listings."""

__version__ = "0.1.0"
