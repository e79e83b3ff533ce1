"""Demo data pump and load generator: real hydraulic cycles as SensorReadings and Actuals."""

from loadgen.readings import BAD_KINDS, PumpEvent, ReadingStream

__all__ = ["BAD_KINDS", "PumpEvent", "ReadingStream"]
