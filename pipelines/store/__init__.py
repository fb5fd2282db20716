"""The run store: runs, block runs, attempts and schedules in a database, with Alembic migrations.

Owns the schema, opening the database (SQLite by default, PostgreSQL by URL), the frozen run
records the rest of Blockbook reads, and the run queue (fire times claimed once, heartbeats,
crashed runs, cancel requests).

May import: the foundation modules, `pipelines.assembly` (project settings) and
`pipelines.rundir` (the block state it records).
"""
