"""Vehicle-insurance cross-sell: the ML core shared by the Airflow DAG, the service and the tests.

Nothing in this package imports Airflow.
"""

__version__ = "0.1.0"
