"""The one base class of failures that retrying cannot fix.

Bad data, parameters the run cannot honour, and files that fail their integrity or signature checks
fail the same way on every try; the Airflow glue (`cross_sell_airflow.stage.stage_run`) fails such a
task at once instead of retrying it. Anything else (a network error, a server that is down) is retried.
"""


class NotRetryable(Exception):
    """A deterministic failure: the message says what to change."""


class NothingToDo(Exception):
    """A stage with nothing to work on yet (scoring or monitoring before the first champion): not a
    failure. The Airflow glue skips the task with this reason, and nobody is alerted."""
