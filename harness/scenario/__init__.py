"""The scenario: one YAML file describes one experiment (schema in model.py, reference docs in docs.py)."""

from harness.scenario.model import FaultWindow, Scenario, load_scenario, parse_scenario

__all__ = ["FaultWindow", "Scenario", "load_scenario", "parse_scenario"]
