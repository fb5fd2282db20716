"""Assembly: from a project folder to one validated graph, without running any code.

Owns the project (its root, its pipelines, `blockbook.toml` and `pipeline.toml`, connections),
the `%%block` header, reading notebooks, static analysis, compiled blocks, the graph algorithms
and the assembled `Pipeline`.

May import: the foundation modules (`pipelines.errors`, `status`, `params`, `envrefs`) and
`pipelines.rundir` (the layout of the state folder it skips).
"""
