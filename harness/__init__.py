"""Reproduction and load-test harness for the LiteLLM proxy's phantom-budget bug."""

__version__ = "0.1.0"
