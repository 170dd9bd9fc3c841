"""The browser pages of `phonebatch api`: sign in with the API token once, then follow,
submit and steer batches. Server-rendered (Jinja2) with a little JavaScript of our own;
every action goes through the same operations the CLI and the JSON API use."""
