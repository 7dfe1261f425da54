"""track_interface: being written (see the open issue); registers nothing yet."""
