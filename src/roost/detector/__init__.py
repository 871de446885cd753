"""Failure detection: judging hosts from their heartbeats. Pure: `now` is passed in."""
