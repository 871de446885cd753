"""Drivers run a machine's workload. One narrow interface; `process` is the default, `fake` is for tests."""

from roost.agent.drivers.base import Driver, DriverError, ExitInfo, RunInfo, StartSpec

__all__ = ["Driver", "DriverError", "ExitInfo", "RunInfo", "StartSpec"]
