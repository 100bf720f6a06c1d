"""The model in production: serving skew, drift, realized performance per day, the shadow report.
"""
