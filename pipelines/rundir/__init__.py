"""The run folder: what kernels and the runner share on disk while a run happens.

Owns the layout of `.blockbook/runs/RUN_ID/`, the plan file, the block state files and the
stored outputs (artifacts). Every kernel imports this package, so it stays light: no database
drivers, no papermill.

May import: the foundation modules only.
"""
