"""The daemon shell: command line, daemon lifecycle, status servers, logging and the
VRRP engine's loop thread.  The only place that wires engines and plugins together."""
