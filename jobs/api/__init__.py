"""The HTTP API (`phonebatch api`): the FastAPI app (`app`), its routers (`submissions`,
`batches`, `control`), request and response models (`schemas`), and what routes share
(`deps`, `upload`, `metrics`).

May import `jobs.operations`, `jobs.store`, `jobs.queue`, `jobs.batch` and `config`.
"""
