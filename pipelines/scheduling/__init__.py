"""Scheduling: fire times of schedules, the scheduler daemon, and the launcher of runner processes.

May import: the foundation modules, `pipelines.assembly`, `pipelines.rundir`, `pipelines.store`
and `pipelines.alerts`; never `pipelines.runs` (runs start in their own processes).
"""
