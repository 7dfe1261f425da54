"""track_file: being written (see the open issue); registers nothing yet."""
