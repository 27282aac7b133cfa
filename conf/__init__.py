"""Default configuration (YAML), shipped as package data."""
