"""smtp_alert: being written (see the open issue); registers nothing yet."""
