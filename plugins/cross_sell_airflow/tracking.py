"""MLflow tracking from inside a task (`cross_sell.governance.tracking` does the logging, bounded and never raising).

The tracking server is the standard `MLFLOW_TRACKING_URI`, or else the Airflow connection
`CROSS_SELL_MLFLOW_CONN_ID` (default `cross_sell_mlflow`, e.g. `http://127.0.0.1:5000`); neither: nothing is
tracked. A problem is logged by `cross_sell.governance.tracking` and alerted here, once per run: by the task that
opens the run's MLflow run (`evaluate`, `score`, `monitor`), not by the ones that only tag it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cross_sell.governance.tracking import Tracked


def configured() -> bool:
    """Whether a tracking server is set; from the connection into MLFLOW_TRACKING_URI when only it is."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return True
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        connection = BaseHook.get_connection(os.environ.get("CROSS_SELL_MLFLOW_CONN_ID", "cross_sell_mlflow"))
    except AirflowNotFoundException:
        return False
    scheme = connection.conn_type if connection.conn_type in ("http", "https") else "http"
    os.environ["MLFLOW_TRACKING_URI"] = f"{scheme}://{connection.host}:{connection.port or 5000}"
    return True


def airflow_ids() -> dict[str, Any]:
    """The running task's dag, run and try, and its log URL: tags that lead from MLflow back to Airflow."""
    from airflow.sdk import get_current_context

    ti = get_current_context()["ti"]
    return {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "try_number": ti.try_number,
            "log_url": getattr(ti, "log_url", None)}


def report(tracked: Tracked, alert_on_problem: bool = True) -> None:
    if tracked.problem and alert_on_problem:
        from cross_sell_airflow.alerts import alert

        alert(f"MLflow tracking: {tracked.problem}", "tracking")
