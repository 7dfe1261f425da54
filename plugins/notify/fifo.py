"""notify_fifo: being written (see the open issue); registers nothing yet."""
