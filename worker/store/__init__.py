"""The record of every job: SQLAlchemy models, sessions and queries."""
