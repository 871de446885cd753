"""Drills: rehearse a failure on the local fleet under load and measure what users saw."""
