"""The stream processors: scorer -> drift / latency / accuracy -> alerts."""
