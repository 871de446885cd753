"""The host agent (`roost agent`): registers its host, heartbeats, and runs machines through a driver."""
