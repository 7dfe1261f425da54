"""notify_script: being written (see the open issue); registers nothing yet."""
