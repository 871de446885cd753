"""The data plane (`roost proxy`): HTTP and TCP routing, balancing, autostart/autostop, retries."""
