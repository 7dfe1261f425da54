"""tcp_check: being written (see the open issue); registers nothing yet."""
