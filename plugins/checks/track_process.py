"""track_process: being written (see the open issue); registers nothing yet."""
