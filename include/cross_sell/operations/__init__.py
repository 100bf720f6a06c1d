"""The operations a user runs (the DAG tasks and the CLI commands call these).
"""
