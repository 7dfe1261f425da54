"""The plugin machinery: base classes, hookspecs and the plugin manager (internal;
plugins import :mod:`pykeepalived.api`)."""
