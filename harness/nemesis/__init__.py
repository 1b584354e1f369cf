"""The nemesis: fault kinds (registry, typed params) and the scheduler that runs a scenario's fault windows."""
