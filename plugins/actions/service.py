"""service_action: being written (see the open issue); registers nothing yet."""
