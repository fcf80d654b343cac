"""The local target's engines: each runs the production artifact on this machine."""
