"""Forms: the shapes pipelines and runs take outside Python, shared by every entry point.

Owns the JSON forms of graphs, runs and blocks (CLI `--format json`, the REST server and
`%pipeline`), the text, Mermaid and DOT diagrams of a graph and the status palette.

May import: the foundation modules, `pipelines.assembly`, `pipelines.rundir` and
`pipelines.store` (records only).
"""
