"""A local stand-in for the Vapi phone-number API, for the demo, tests and benchmarks.

It validates every request body against the OpenAPI spec's own JSON schema (not through
phonebatch's models, so it catches their mistakes) and keeps the numbers' state.
"""
