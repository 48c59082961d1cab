"""testbed: boot one application on many execution platforms and measure it with provenance."""

__version__ = "0.1.0"
