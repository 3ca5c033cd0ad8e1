"""Database access: one interface (`Database`), a backend module per dialect beside it."""

from service.db.database import Database, create_database

__all__ = ["Database", "create_database"]
