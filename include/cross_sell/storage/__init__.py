"""Where things are kept: S3 objects read and written safely, a run's artifacts, the signed model
registry, and the storage layout (every place that holds data, declared once).
"""
