"""core/vrrp"""
