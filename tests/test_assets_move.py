"""Issue #32: changing CROSS_SELL_S3_PREFIX on an existing Airflow database failed the next run at once
(AirflowInactiveAssetInInletOrOutletException; a retrigger worked, after the scheduler's orphan sweep).

Airflow keeps one active Asset per name and one per URI, and before a task runs the execution API checks that
every Asset of its inlets and outlets is active. The Assets' URIs name the registry's place; a name that
stayed the same while the place moved made a second Asset of that name that could not be activated while the
old one was. Here the DAGs are parsed into one metadata database as the DAG processor does (`airflow dags
reserialize`, a fresh process each time: the settings are read at parse time), at the default place, then
moved (prefix, then bucket), then back: after each parse every Asset a task reads or writes is active.
"""

import json
import os
import subprocess
import sys

import pytest

from devstack import local_services
from support import ROOT, scaled

pytestmark = pytest.mark.dagrun  # Airflow's metadata DB and DAG parsing in processes of their own

INACTIVE = """
import json
from sqlalchemy import select
from airflow.models.asset import AssetActive
from airflow.models.dag import DagModel
from airflow.models.serialized_dag import SerializedDagModel
from airflow.utils.session import create_session

with create_session() as session:
    active = set(session.execute(select(AssetActive.name, AssetActive.uri)).all())
    inactive = {}
    for dag_id in session.scalars(select(DagModel.dag_id)):
        row = SerializedDagModel.get(dag_id, session=session)  # the latest version: what a new run runs
        for task in row.dag.tasks:  # what the execution API checks before the task runs
            for asset in (*task.inlets, *task.outlets):
                if hasattr(asset, "uri") and (asset.name, asset.uri) not in active:
                    inactive.setdefault(f"{row.dag_id}.{task.task_id}", []).append([asset.name, asset.uri])
print(json.dumps(inactive))
"""


def _airflow(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=scaled(300))
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-4000:])
    return done.stdout


def test_moving_the_registry_leaves_every_task_asset_active_at_once(tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CROSS_SELL_"))}
    env = {**base, **local_services.airflow_config(tmp_path / "airflow"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")]),
           "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0"}  # each parse is written (a restart is later)
    _airflow(env, "-m", "airflow", "db", "migrate")
    places = [{}, {"CROSS_SELL_S3_PREFIX": "moved-prefix"},
              {"CROSS_SELL_S3_PREFIX": "moved-prefix", "CROSS_SELL_S3_BUCKET": "another-bucket"}, {}]
    for place in places:  # a restart with the new setting: the processor parses, a run starts at once
        _airflow({**env, **place}, "-m", "airflow", "dags", "reserialize")
        inactive = json.loads(_airflow(env, "-c", INACTIVE).strip().splitlines()[-1])
        assert inactive == {}, (place, inactive)
