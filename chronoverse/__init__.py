"""Chronoverse: a self-hosted orchestrator for scheduled jobs."""

__version__ = "0.1.0"
