"""Roost: a self-hosted machines platform, Fly Machines API compatible."""

__version__ = "0.1.0"
