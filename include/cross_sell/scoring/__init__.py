"""Batch scoring: every customer scored in bounded memory, deciles and the campaign list, files.
"""
