"""What is done to batches: submitting them (`producer`), finding and resuming stalled
ones (`recovery`), retrying failures, rolling back, firing schedules, and signing
completion webhooks.

May import `jobs.store`, `jobs.queue`, `jobs.batch` and `config`.
"""
