"""The `extgate` command line."""
