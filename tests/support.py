"""What the tests share beside their fixtures: the environment (set before anything imports Airflow, which reads
its configuration at import; conftest.py imports this module first), the repository's paths, the session's
signing key pair, and helpers. Test modules import from here, never from conftest."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "include", ROOT / "plugins"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
IN_CI = os.environ.get("CI", "").lower() == "true"
# Every wait on a server scales with this factor (devstack reads it too): slow machine, slow tests, no errors.
os.environ.setdefault("CROSS_SELL_TIMEOUT_FACTOR", "3" if IN_CI else "1")

from cross_sell.storage import signing  # noqa: E402  (no Airflow import yet)
from devstack import local_services  # noqa: E402

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cross-sell-airflow-"))
# One model-signing key pair for the session: the private key reaches the pipeline the way it does in
# production (an Airflow connection), the public key every reader (CROSS_SELL_SIGNING_PUBLIC_KEY).
SIGNING_KEY, SIGNING_PUBLIC_KEY = signing.generate_key_pair(_AIRFLOW_HOME / "signing")
os.environ.update({
    **local_services.airflow_config(_AIRFLOW_HOME),
    **local_services.signing_env(SIGNING_KEY, SIGNING_PUBLIC_KEY),
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "CROSS_SELL_S3_BUCKET": "cross-sell-test",
    "CROSS_SELL_S3_PREFIX": "vehicle-insurance",
    "CROSS_SELL_MONGO_DATABASE": "cross_sell_test",
})

import pytest  # noqa: E402

SAMPLE_CSV = ROOT.parent / "shared" / "data" / "cross_sell_sample.csv"
scaled = local_services.scaled


def skip_unless_available(reason: str | None) -> None:
    """Skip with `reason` when a required server is absent; under CI=true that is a failure instead."""
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


ALERT_TEXT = re.compile(r"^\[cross-sell\] (?P<kind>[\w ]+): (?P<dag_id>[^/]+)/(?P<task_id>\S+) in run (?P<run_id>\S+) "
                        r"\(try (?P<try_number>\d+|None)\): (?P<reason>.*?)(?:\nlog: (?P<log_url>\S+))?$", re.S)


def parse_dags():
    """The DAG folder as Airflow's processor parses it (a new DagBag: the DAG files read the environment of
    the moment, e.g. a key file a test has just set); an import error fails the caller."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}, bag.import_errors
    return bag


DAG_IDS = ("cross_sell_training", "cross_sell_scoring", "cross_sell_monitoring", "cross_sell_rollback",
           "cross_sell_erasure", "cross_sell_housekeeping")


def expectation_count() -> int:
    """How many expectations the snapshot suite holds (derived from schema.py, so not written down here)."""
    import great_expectations as gx

    from cross_sell.data.validation import build_suite

    gx.get_context(mode="ephemeral")  # a suite is built inside a context, as run_suite does
    return len(build_suite(min_rows=1).expectations)


@contextlib.contextmanager
def dag_run_stack(mongo_server, s3_server, rows: int, seed: int):
    """What full `dag.test()` runs need, on the session's local servers: the bucket and customers the
    settings name (loaded: `rows` synthetic ones from `seed`), Airflow connections to them, a fresh
    metadata DB, and the registry. Yields {"collection", "registry", "settings"}."""
    from airflow.utils.db import resetdb
    from pymongo import MongoClient

    from cross_sell.data import loader, synthetic
    from cross_sell.settings import Settings
    from cross_sell.storage.registry import ModelRegistry
    from cross_sell.storage.signing import ManifestVerifier

    settings = Settings.from_env()
    local_services.create_bucket(s3_server, settings.s3_bucket)
    os.environ.update(local_services.airflow_connections(mongo_server, s3_server, settings.mongo_database))
    client = MongoClient(mongo_server.url)
    collection = client[settings.mongo_database][settings.mongo_collection]
    collection.drop()
    loader.upsert(collection, synthetic.generate(rows, seed=seed), progress=False)
    resetdb()
    registry = ModelRegistry(local_services.s3_client_for(s3_server), settings.s3_bucket, settings.s3_prefix,
                             ManifestVerifier.from_env())
    try:
        yield {"collection": collection, "registry": registry, "settings": settings}
    finally:
        client.close()
