"""A batch before it is queued, all pure: reading CSV / JSON / JSONL rows, coercing text
to typed values, the request models, validation with errors in plain words, selection
conditions, diffs, redaction of secrets, and the rules for reading numbers first.

Imports nothing of phonebatch but itself, and no Redis, HTTP, Celery, CLI or web library.
"""
