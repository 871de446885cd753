"""Placement: which host a machine or volume goes to. Pure: a snapshot in, a decision out."""
