"""Running a pipeline stage from an Airflow task: the one piece of glue every task body uses.

    @task(multiple_outputs=False, retries=0)
    def validate(extracted: Extracted) -> Validated:
        # inside the task: never imported when the scheduler parses the DAG
        from cross_sell.operations import training as stages

        with stage_run(TrainingParams) as run:
            return run.done(stages.validate(run.artifacts, snapshot_ref=extracted["snapshot"],
                                            min_rows=run.params["min_rows"]))

`stage_run` builds a `StageRun` from the task's context: its run, its params (typed by the DAG's
params record, so a misspelt param is a type error), and clients for its Airflow connections, built when
first used. Before the block runs, the params are checked against the deployment policy (a run may tighten
a gate, never loosen it: `cross_sell.governance.policy`) and every record the task received from XCom (`inputs`) is
opened: its custody seal must be the workers' key's, over this very record and this run
(`cross_sell.governance.custody`), or the task fails. `run.done(result)` seals what the task hands on. Inside the
block a `NotRetryable` failure (bad data, drift when told to fail, a broken
signature) fails the task at once with its message; `NothingToDo` (no champion yet) skips it with the
reason, and nobody is alerted; any other exception is left to the task's retries. `run.done(result)`
hands the stage's result on and reports the task's OpenLineage inputs and outputs when the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from cross_sell.settings import Settings

if TYPE_CHECKING:  # types only: these import boto3, pymongo and the registry, not cheap at parse time
    from cross_sell.governance.custody import Custody
    from cross_sell.privacy.suppression import Suppression
    from cross_sell.storage.artifacts import RunArtifacts
    from cross_sell.storage.registry import ModelRegistry
    from cross_sell.storage.signing import ManifestSigner

T = TypeVar("T")
P = TypeVar("P", bound=Mapping[str, Any])


@dataclass
class StageRun(Generic[P]):
    """What a stage needs from the running task: its run and params, and clients for its connections."""

    settings: Settings
    run_id: str
    run_started: datetime
    params: P
    triggered_by: str = "airflow"  # the user who triggered the run (the UI's or REST API's login), else "airflow"
    task_id: str = ""
    dag_id: str = ""
    result: Any = field(default=None, init=False)  # what `done` was given: the task's OpenLineage outputs
    # The records this task received, as sealed (e.g. to hand one on in an Asset event).
    sealed_inputs: list[dict] = field(default_factory=list, init=False)

    def done(self, result: T) -> T:
        """The stage's result, sealed for XCom (`cross_sell.governance.custody`); its artifacts become the task's
        OpenLineage datasets. A plain string (a page, a message) is handed on as it is: no task trusts one."""
        self.result = result
        if isinstance(result, Mapping):
            return cast(T, self.custody.seal(result, self.dag_id, self.run_id, self.task_id))
        return result

    @cached_property
    def custody(self) -> Custody:
        from cross_sell.governance.custody import Custody

        return Custody.from_env()

    def open_inputs(self, inputs: Mapping[str, dict]) -> None:
        """Check each received record's seal (by the task named, in this DAG and run) and strip it, in place
        (the task body's own variables); a record sealed by another task or run, by nobody, or changed since
        is refused (CustodyError)."""
        for task_id, record in inputs.items():
            plain = self.custody.open(record, f"{task_id}'s record, as task {self.task_id} received it",
                                      dag_id=self.dag_id, run_id=self.run_id, task_id=task_id)
            self.sealed_inputs.append(dict(record))
            record.clear()
            record.update(plain)

    @cached_property
    def artifacts(self) -> RunArtifacts:
        from cross_sell_airflow.hooks import run_artifacts

        return run_artifacts(self.settings, self.run_id)

    @cached_property
    def registry(self) -> ModelRegistry:
        from cross_sell_airflow.hooks import model_registry

        return model_registry(self.settings)

    @cached_property
    def signer(self) -> ManifestSigner:
        from cross_sell.storage.signing import check_pair
        from cross_sell_airflow.hooks import manifest_signer

        return check_pair(manifest_signer(self.settings), self.registry.verifier)

    @cached_property
    def housekeeping_registry(self) -> ModelRegistry:
        """The registry through the housekeeping user's connection: the one allowed to delete (retention,
        erasure) and to read what it needs to decide."""
        from cross_sell_airflow.hooks import model_registry

        return model_registry(self.settings, aws_conn_id=self.settings.housekeeping_aws_conn_id)

    @cached_property
    def scores_artifacts(self) -> RunArtifacts:
        """This run's folder under `<prefix>/scores/` (the scoring DAG)."""
        from cross_sell.storage.artifacts import RunArtifacts

        return RunArtifacts(self.artifacts.s3, self.settings.s3_bucket, self.settings.s3_prefix, self.run_id,
                            area="scores")

    def customer_documents(self, fields: tuple[str, ...] | None = None, conn_id: str | None = None) -> Iterator[dict]:
        from cross_sell_airflow.hooks import customer_documents

        self.mongo_used.append((conn_id or self.settings.mongo_conn_id, self.settings.mongo_collection, False))
        return customer_documents(self.settings, fields, conn_id)

    def collection(self, name: str, conn_id: str | None = None, written: bool = False):
        """A MongoDB collection of the customers' database through `conn_id` (the DAG's role; default the
        training side's), open until the stage returns. `written`: the stage writes it (lineage output)."""
        from airflow.providers.mongo.hooks.mongo import MongoHook

        self.mongo_used.append((conn_id or self.settings.mongo_conn_id, name, written))
        hook = MongoHook(mongo_conn_id=conn_id or self.settings.mongo_conn_id)
        self._closing.append(hook)
        return hook.get_collection(name, mongo_db=self.settings.mongo_database)

    def suppression(self, conn_id: str | None = None) -> Suppression:
        """The erased customers' keyed hashes (`cross_sell.privacy.suppression`), to leave them out."""
        from cross_sell.privacy.suppression import Suppression, read_key

        return Suppression.from_collection(self.collection(self.settings.erased_collection, conn_id),
                                           read_key(self.settings.erasure_key_file))

    @cached_property
    def _closing(self) -> list:
        return []

    @cached_property
    def mongo_used(self) -> list[tuple[str, str, bool]]:
        """(connection id, collection, written) of every collection the stage used (OpenLineage)."""
        return []

    def close(self) -> None:
        for hook in self._closing:
            hook.close()


def unknown_conf(context) -> list[str]:
    """Keys of the triggering conf that are not params of the DAG (the first task fails on them)."""
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    dag = context.get("dag")
    return sorted(set(conf) - set(dag.params)) if dag is not None else []


@contextmanager
def stage_run(params: type[P], settings: Settings | None = None, **inputs: Any) -> Iterator[StageRun[P]]:
    """The running task as a `StageRun` whose `params` are typed by the DAG's `params` record (e.g.
    `cross_sell.params.TrainingParams`); `inputs`: every record the task received from XCom, by the task that
    wrote it (`extract=extracted`), opened (checked and unsealed, in place) before the block runs; failures
    mapped to what Airflow should do."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from cross_sell import params as run_params
    from cross_sell.errors import NothingToDo, NotRetryable

    context = get_current_context()
    unknown = unknown_conf(context)
    if unknown:  # Airflow passes conf keys that no Param declares straight through: a typo would be ignored
        raise AirflowFailException(f"unknown param(s) {unknown} in the run's conf; valid: "
                                   f"{', '.join(sorted(context['dag'].params))}")
    dag_run = context["dag_run"]
    run = StageRun(settings or Settings.from_env(), context["run_id"], dag_run.run_after,
                   cast(P, dict(context["params"])), getattr(dag_run, "triggering_user_name", None) or "airflow",
                   task_id=context["ti"].task_id, dag_id=context["ti"].dag_id)
    try:
        run_params.check(run.params)  # what the DAG's JSON schema cannot check cheaply: feature names
        # The deployment policy: a conf may tighten the gates, never loosen them; what the run is judged by.
        run.params = cast(P, run_params.under_policy(params, dict(run.params), getattr(dag_run, "conf", None) or {},
                                                      run.settings.policy, run.triggered_by))
        run.open_inputs(inputs)
        yield run
        from cross_sell_airflow import lineage

        lineage.report(context, run, run.result)  # OpenLineage inputs and outputs, when the provider is on
    except NotRetryable as failure:
        raise AirflowFailException(f"{type(failure).__name__}: {failure}") from None
    except NothingToDo as idle:  # e.g. no champion yet: skipped with the reason, no alert
        raise AirflowSkipException(str(idle)) from None
    finally:
        run.close()


if TYPE_CHECKING:
    from cross_sell.clients import Clients

    def _a_task_run_is_clients(run: StageRun) -> Clients:  # mypy checks that StageRun satisfies the protocol
        return run
