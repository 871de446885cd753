"""Balancing decisions for the proxy: who gets a request, when to autostart, what the idle loop stops.
Pure: a snapshot of targets and their loads in, a decision out."""
