"""rigwatch: streaming scoring and model monitoring on Kafka for a hydraulic test rig."""

__version__ = "0.1.0"
__all__ = ["__version__"]
