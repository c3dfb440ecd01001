"""The scenario catalog: YAML files shipped as package data (see harness.scenario)."""
