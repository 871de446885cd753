"""The local fleet: `roost dev up|status|down`."""
