"""Airflow glue for the cross-sell pipeline: connections in, plain clients out.

The ML core (`cross_sell`, under include/) never imports Airflow; this package turns Airflow
connections (MongoHook, S3Hook) and the task context into what the core's stage functions take.
"""
