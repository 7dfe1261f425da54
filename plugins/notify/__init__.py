"""plugins/notify"""
