"""OpenLineage: each task's inputs and outputs, as datasets with facets, for the OpenLineage provider.

`stage_run` calls `report` when its block ends after `run.done(result)`. It turns what the task read and wrote
(`RunArtifacts`' read and write logs, the registry versions it loaded or published, the MongoDB collections it
used) into OpenLineage datasets named by the OpenLineage naming spec (S3: namespace `s3://<bucket>`, name the
key; MongoDB: `mongodb://<host>:<port>`, `<database>.<collection>`), and sets them as the task's inlets and
outlets. The provider's listener reads those when the task completes and sends them with its own run, job and
Airflow facets, through the transport its configuration names ([openlineage] transport; compose: Marquez;
locally: off unless configured). Facets: schema (from schema.py), dataset version (the sha256), row counts,
and the validation's data-quality assertions (expectation, column, success: never a value).
"""

from __future__ import annotations

import logging

from cross_sell.data import schema

log = logging.getLogger(__name__)
DATA_SUFFIXES = (".parquet", ".onnx", ".joblib", ".csv")  # data, not reports: what lineage is about
SCORES_FIELDS = (("id", "int64"), ("probability", "double"), ("label", "int8"), ("decile", "int8"),
                 ("model_version", "string"), ("scored_at", "string"))
_TYPES = {"integer": "int64", "float": "double", "category": "string"}


def enabled() -> bool:
    try:
        from airflow.providers.openlineage.conf import is_disabled
    except ImportError:  # the provider is not installed here
        return False
    return not is_disabled()


def _fields(names_and_types):
    from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields

    return SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=name, type=kind)
                                      for name, kind in names_and_types])


def _schema_of(key: str):
    name = key.rsplit("/", 1)[-1]
    if "/raw/" in key or "/features/" in key:
        return _fields((c.name, _TYPES[c.kind]) for c in schema.columns(schema.TRAINING))
    if name == "scores.parquet":
        return _fields(SCORES_FIELDS)
    return None


def _s3_dataset(kind, bucket: str, key: str, facets: dict | None = None):
    return kind(namespace=f"s3://{bucket}", name=key, facets=facets or {})


def _artifact_datasets(kind, bucket: str, artifacts: list[dict], extra: dict | None = None) -> list:
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

    seen, datasets = set(), []
    for artifact in artifacts:
        key = artifact["key"]
        if not key.endswith(DATA_SUFFIXES) or key in seen:
            continue
        seen.add(key)
        facets = {"version": DatasetVersionDatasetFacet(datasetVersion=artifact["sha256"])}
        if (fields := _schema_of(key)) is not None:
            facets["schema"] = fields
        facets.update((extra or {}).get(key, {}))
        datasets.append(_s3_dataset(kind, bucket, key, facets))
    return datasets


def _quality_facets(run, result) -> dict:
    """Per dataset key: the validation's assertions (validate) or row counts (extract, score)."""
    from openlineage.client.generated.data_quality_assertions_dataset import (
        Assertion,
        DataQualityAssertionsDatasetFacet,
    )
    from openlineage.client.generated.data_quality_metrics_dataset import DataQualityMetricsDatasetFacet

    if not isinstance(result, dict):
        return {}
    facets: dict[str, dict] = {}
    if "result_key" in result and "summary" in result and "artifacts" in run.__dict__:  # validate
        gx = run.artifacts.get_json(result["result_key"])
        assertions = [Assertion(assertion=item["expectation_config"]["type"], success=bool(item["success"]),
                                column=item["expectation_config"]["kwargs"].get("column"))
                      for item in gx.get("results", [])]
        snapshot = next((a["key"] for a in run.artifacts.read_log if a["key"].endswith("snapshot.parquet")), None)
        if snapshot:
            facets[snapshot] = {"dataQualityAssertions": DataQualityAssertionsDatasetFacet(assertions=assertions)}
    for record_key, rows_key in (("snapshot", "rows"), ("scores", "rows")):  # extract, score
        artifact = result.get(record_key)
        if isinstance(artifact, dict) and "key" in artifact and isinstance(result.get(rows_key), int):
            facets.setdefault(artifact["key"], {})["dataQualityMetrics"] = DataQualityMetricsDatasetFacet(
                rowCount=result[rows_key], columnMetrics={})
    return facets


def _mongo_dataset(kind, settings, conn_id: str, collection: str):
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    facets = {}
    if collection == settings.mongo_collection:
        facets["schema"] = _fields((c.name, _TYPES[c.kind]) for c in schema.columns(schema.TRAINING))
    elif collection == settings.scores_collection:
        facets["schema"] = _fields(SCORES_FIELDS)
    return kind(namespace=f"mongodb://{connection.host}:{connection.port or 27017}",
                name=f"{settings.mongo_database}.{collection}", facets=facets)


def datasets(run, result) -> tuple[list, list]:
    """(inputs, outputs) of a finished stage, as OpenLineage datasets."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    settings, quality = run.settings, _quality_facets(run, result)
    inputs, outputs = [], []
    for name in ("artifacts", "scores_artifacts"):
        artifacts = run.__dict__.get(name)  # only the clients the stage used
        if artifacts is not None:
            inputs += _artifact_datasets(InputDataset, artifacts.bucket, artifacts.read_log, quality)
            outputs += _artifact_datasets(OutputDataset, artifacts.bucket, artifacts.write_log, quality)
    for name in ("registry", "housekeeping_registry"):
        registry = run.__dict__.get(name)
        if registry is not None:
            inputs += [_s3_dataset(InputDataset, registry.bucket, registry.version_file_key(v, "").rstrip("/"))
                       for v in dict.fromkeys(registry.loaded_versions)]
            outputs += [_s3_dataset(OutputDataset, registry.bucket, registry.version_file_key(v, "").rstrip("/"))
                        for v in dict.fromkeys(registry.published_versions)]
    for conn_id, collection, written in dict.fromkeys(run.mongo_used):
        kind = OutputDataset if written else InputDataset
        (outputs if written else inputs).append(_mongo_dataset(kind, settings, conn_id, collection))
    return inputs, outputs


def report(context, run, result) -> None:
    """Set the task's OpenLineage inputs and outputs (its inlets and outlets, beside its Assets)."""
    if not enabled():
        return
    from openlineage.client.event_v2 import Dataset

    try:
        inputs, outputs = datasets(run, result)
    except Exception:  # lineage must never fail the task that did the work
        log.warning("could not describe this task's lineage for OpenLineage", exc_info=True)
        return
    task = context["task"]
    task.inlets = [i for i in task.inlets if not isinstance(i, Dataset)] + inputs
    task.outlets = [o for o in task.outlets if not isinstance(o, Dataset)] + outputs
    log.info("OpenLineage: %s input(s) %s, %s output(s) %s", len(inputs), [d.name for d in inputs],
             len(outputs), [d.name for d in outputs])
