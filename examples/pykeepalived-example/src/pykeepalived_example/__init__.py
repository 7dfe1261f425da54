"""Example pykeepalived plugin (see :mod:`pykeepalived_example.plugin`)."""
