"""The jupyter_server extension: thin REST handlers and events over `pipelines.api.Project`.

May import: `pipelines.api`, `pipelines.forms` and the foundation modules.
"""
