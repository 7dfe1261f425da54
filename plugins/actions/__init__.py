"""plugins/actions"""
