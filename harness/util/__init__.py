"""Plumbing with no knowledge of LiteLLM or of an experiment: processes, ports, sockets, JSON control clients."""
