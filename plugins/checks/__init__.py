"""plugins/checks"""
