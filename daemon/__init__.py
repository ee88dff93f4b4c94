"""The tradectl daemon: runs bots, owns the state store, serves the control socket."""
