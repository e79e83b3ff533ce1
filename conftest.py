# The module entry point runs the CLI on import; doctest collection must not import it.
collect_ignore = ["rigwatch/__main__.py"]
