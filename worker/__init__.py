"""The worker side of phonebatch: the Celery app, the task, the Vapi client."""
