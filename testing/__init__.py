"""Test tooling for pykeepalived and plugin authors: the network-namespace lab,
the pytest plugin, daemon runners.  Nothing in the product imports it."""
