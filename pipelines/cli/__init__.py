"""The `blockbook` command: parsing arguments and presenting results, nothing else.

May import: `pipelines.api` (everything it does goes through `Project`), `pipelines.forms` and
the foundation modules, plus the types it presents.
"""
