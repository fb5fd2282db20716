"""`python -m pipelines` is the `blockbook` command, for callers that only know the interpreter."""

from pipelines.cli.main import main

main()
