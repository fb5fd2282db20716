"""Plain helpers the tests import; the conftest files hold only pytest fixtures.

- `paths`: where the repository is.
- `notebooks`: writing notebooks and pipeline folders with nbformat.
- `postgres`: the test PostgreSQL database and throwaway schemas in it.
- `runs`: checking runs, reading what they left behind, the `blockbook` command, kernels.
"""
