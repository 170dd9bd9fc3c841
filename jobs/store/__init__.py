"""The report store: a batch's record, counters and one record per item (`interface`),
kept in Redis by atomic scripts (`redis_store`, `scripts`) or in memory for tests
(`memory_store`), and the report built from it as JSON, CSV or text (`report`).

May import `jobs.queue` (the bulk writer) and `jobs.batch`.
"""
