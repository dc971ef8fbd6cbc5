"""Database access: engine, declarative base, per-request transaction, migrations."""
