"""The task queue on Redis as the producer and recovery see it: Celery task messages built
by hand (`messages`), every Redis key of the queue and of kombu's transport (`keys`),
items handed back with a countdown (`deferral`), and the pipelined bulk writer (`bulk`,
`resp`).

May import `jobs.batch` only.
"""
