"""extgate."""
