"""Integrations with web frameworks: each sub-package needs its framework installed."""
