"""Pure decision cores shared by every component: no I/O, no clocks, no sockets."""
