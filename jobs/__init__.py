"""Everything but the workers: batch input, the report store, the task queue, batch
operations and the front ends (the `phonebatch` command and the HTTP API).

Subpackages, each importing only those below it (import-linter checks it, see
pyproject.toml): `cli`, `api`, `operations`, `store`, `queue`, `batch`. Nothing in `jobs`
imports `worker`, but `jobs.cli.run`, the command that starts workers and beat.
"""
