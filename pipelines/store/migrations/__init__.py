"""Alembic migrations of the run store (`pipelines.store`); see env.py for adding a revision."""
