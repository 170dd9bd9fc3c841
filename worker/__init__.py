"""The workers: the Celery app and its Redis transport, the tasks, sending one item
(`delivery`, `retry`, `vapi`), the shared pace (`limiter`, `limiter_redis`), reading
numbers in bulk (`reader`, `selector`), schedules (`beat`) and process supervision.

Builds on `jobs` and `config`; nothing there imports this package (but `jobs.cli.run`,
which starts it).
"""
