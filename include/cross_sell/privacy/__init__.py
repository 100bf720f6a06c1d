"""Customer data: erasure, the suppression list, erasure receipts, retention, marketing consent.
"""
