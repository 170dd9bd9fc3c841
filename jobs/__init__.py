"""The producer side of phonebatch: models, input, validation, submission, reports, UIs."""
