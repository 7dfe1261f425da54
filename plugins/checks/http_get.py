"""http_get: being written (see the open issue); registers nothing yet."""
