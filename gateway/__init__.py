"""pdm-gateway: an industrial predictive-maintenance sensor gateway."""

__version__ = "0.1.0"
