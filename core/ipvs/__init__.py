"""core/ipvs"""
