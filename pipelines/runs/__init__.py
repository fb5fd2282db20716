"""Runs: building a run's plan and notebooks, executing them with papermill, finishing the run.

Owns the runner (the recipe of a run), the execution of run notebooks (threads, kernels,
timeouts, cancel, heartbeats), Blockbook's papermill engine and debug notebooks.

May import: the foundation modules, `pipelines.assembly`, `pipelines.rundir`, `pipelines.store`
and `pipelines.alerts`.
"""
