"""Alerts: the message a finished (or late) run calls for, and sending it by webhook or email.

May import: the foundation modules, `pipelines.assembly`, `pipelines.rundir` and
`pipelines.store`.
"""
