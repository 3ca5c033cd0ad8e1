"""HTTP transport for the runner (`extgate runner serve`)."""
