"""Issue #30: the abuse cases of docs/security.md, as the people they govern would try them, through Airflow's
REST API (the official `apache-airflow-client`), the bucket and MongoDB, against a running `airflow standalone`
with users of each role and a deployment policy:

* admin (Admin), oscar (Op, the rollback operator), alice and mallory (User, the approvers), victor (Viewer);
* CROSS_SELL_REQUIRE_APPROVAL=true, CROSS_SELL_APPROVERS=alice,mallory, CROSS_SELL_ROLLBACK_OPERATORS=oscar;
  a zero margin and a 0.6 floor, so a retrained twin of the champion is blessed and asks for approval.

Each test names the break it covers (issue #30's numbering) and the row of the abuse-case table.
"""

import base64
import json

import pytest
from airflow_client.client.exceptions import ApiException

from standalone_support import standalone_airflow
from support import scaled

pytestmark = pytest.mark.dagrun
TRAINING, ROLLBACK = "cross_sell_training", "cross_sell_rollback"
POLICY = {
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,oscar:op,alice:user,mallory:user,victor:viewer",
    "CROSS_SELL_REQUIRE_APPROVAL": "true",
    "CROSS_SELL_APPROVERS": "alice,mallory",
    "CROSS_SELL_ROLLBACK_OPERATORS": "oscar",
    "CROSS_SELL_PROMOTION_MARGIN": "0",
    "CROSS_SELL_MIN_ROC_AUC": "0.6",
    "CROSS_SELL_APPROVAL_TIMEOUT_HOURS": "1",
}
RUN = {"min_rows": 500}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with standalone_airflow(tmp_path_factory.mktemp("abuse"), extra_env=POLICY) as running:
        admin = running.user("admin")
        admin.wait(lambda: admin.api("DAGApi").get_dag(TRAINING), scaled(120), "the DAGs to be parsed")
        yield running


def _registry(env: dict):
    import boto3

    from cross_sell.settings import Settings
    from cross_sell.storage.registry import ModelRegistry
    from cross_sell.storage.signing import ManifestVerifier

    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    settings = Settings()
    return ModelRegistry(s3, settings.s3_bucket, settings.s3_prefix,
                         ManifestVerifier.from_file(env["CROSS_SELL_SIGNING_PUBLIC_KEY"]))


def _status(call) -> int:
    """The 4xx a refused call gets. A 5xx is no answer (SQLite's lock on a loaded machine makes Airflow's
    action log fail with 500 now and then), so the call is made again until Airflow answers."""
    import time

    deadline = time.monotonic() + scaled(60)
    while True:
        with pytest.raises(ApiException) as refused:
            call()
        if refused.value.status < 500 or time.monotonic() > deadline:
            return refused.value.status
        time.sleep(1)


# How long a person takes to read the request before answering: an answer that lands before Airflow 3.3.2's
# scheduler has processed the parked try's executor event fails the resumed task (docs/model-governance.md).
def _awaiting_approval(user, conf: dict | None = None, task: str = "approve") -> str:
    run_id = user.trigger(TRAINING, {**RUN, **(conf or {})})
    user.wait_for_state(TRAINING, run_id, task, ("awaiting_input",), scaled(400), settle=scaled(15))
    return run_id


@pytest.fixture(scope="module")
def champion(stack):
    """A champion pushed the governed way: admin triggers, admin (no approver) cannot answer, alice approves."""
    admin, alice = stack.user("admin"), stack.user("alice")
    run_id = _awaiting_approval(admin)
    assert _status(lambda: admin.respond(TRAINING, run_id, "approve", "Approve", "mine")) == 403
    alice.respond(TRAINING, run_id, "approve", "Approve", "figures checked")
    assert alice.wait_for_run(TRAINING, run_id, scaled(300)).state.value == "success", _failures(admin, run_id)
    return _registry(stack.env).champion(), run_id


def _failures(user, run_id: str, dag_id: str = TRAINING) -> str:
    """The states and the failed tasks' logs, to read when a run did not end as it should."""
    states = user.states(dag_id, run_id)
    logs = [f"--- {task}\n{user.log(dag_id, run_id, task, _last_try(user, run_id, task, dag_id))[-3000:]}"
            for task, state in states.items() if state == "failed"]
    return "\n".join([str(states), *logs])


def test_an_approval_is_airflows_record_signed_into_the_manifest(stack, champion):
    """Row "User approves a run they triggered" / the approval done right."""
    pointer, run_id = champion
    registry = _registry(stack.env)
    manifest = registry.manifest(pointer.version)
    approval = manifest["approval"]
    assert (approval["approved_by"], approval["comment"], approval["triggered_by"]) == (
        "alice", "figures checked", "admin")
    assert approval["subject"]["run_id"] == run_id and approval["subject"]["version"] == pointer.version
    assert approval["self_approved"] is False and approval["source"] == "Airflow human-in-the-loop record"
    assert manifest["policy"]["require_approval"] is True and manifest["policy"]["approvers"] == ["alice", "mallory"]
    assert pointer.pointer["by"] == "alice" and pointer.pointer["note"]["approval"] == approval
    assert pointer.pointer["note"]["policy"] == manifest["policy"]


def test_a_viewer_can_neither_trigger_nor_write_xcom(stack, champion):
    victor = stack.user("victor")
    assert _status(lambda: victor.trigger(TRAINING, RUN)) == 403
    assert _status(lambda: victor.write_xcom(TRAINING, champion[1], "approve", {"chosen_options": ["Approve"]})) \
        == 403


@pytest.mark.parametrize("conf, setting", [({"require_approval": False}, "CROSS_SELL_REQUIRE_APPROVAL=true"),
                                           ({"max_equalized_odds_difference": 1.0},
                                            "CROSS_SELL_MAX_EQUALIZED_ODDS_DIFFERENCE=0.15")],
                         ids=["approval-off", "fairness-cap-off"])
def test_a_user_cannot_switch_a_gate_off_with_the_conf(stack, champion, conf, setting):
    """Break 1: `{"require_approval": false}` pushed without approval; a cap of 1.0 turned fairness off."""
    mallory = stack.user("mallory")
    run_id = mallory.trigger(TRAINING, {**RUN, **conf})
    assert mallory.wait_for_run(TRAINING, run_id, scaled(300)).state.value == "failed"
    states = mallory.states(TRAINING, run_id)
    assert states["extract"] == "failed" and states["push"] in ("upstream_failed", None), states
    log = mallory.log(TRAINING, run_id, "extract")
    assert "loosen the deployment policy" in log and setting in log, log[-2000:]
    assert _registry(stack.env).champion().version == champion[0].version


def test_a_forged_approval_in_xcom_pushes_nothing(stack, champion):
    """Break 2: after the approver rejected, a non-approver created the `approve` XCom saying "Approve" and
    cleared `push`, which published "approved by alice". Also: the user who triggered a run cannot answer it."""
    mallory, alice = stack.user("mallory"), stack.user("alice")
    registry = _registry(stack.env)
    versions = registry.versions()
    run_id = _awaiting_approval(mallory)
    detail = mallory.hitl(TRAINING, run_id, "approve")
    assert [u.name for u in detail.assigned_users] == ["alice"]  # maker-checker: mallory triggered it
    assert _status(lambda: mallory.respond(TRAINING, run_id, "approve", "Approve", "my own")) == 403
    alice.respond(TRAINING, run_id, "approve", "Reject", "not this one")
    assert mallory.wait_for_run(TRAINING, run_id, scaled(300)).state.value == "success"
    assert mallory.states(TRAINING, run_id)["push"] == "skipped"
    forgeries = [  # the old record's shape, and the new one's with a signature made up
        {"chosen_options": ["Approve"], "responded_by_user": {"id": "alice", "name": "alice"},
         "params_input": {"comment": "LGTM"}, "responded_at": "2026-12-04T10:00:00+00:00"},
        {"record": {"kind": "approval", "chosen": "Approve", "approved_by": "alice", "comment": "LGTM",
                    "subject": {"action": "push", "run_id": run_id}},
         "signature": base64.b64encode(b"not a signature").decode()},
    ]
    for forged in forgeries:
        _overwrite_xcom(mallory, run_id, "approve", forged)
        # The rejection's skip marker would skip push again after the clear: a User may delete it too.
        _delete_xcom(mallory, run_id, "approve", "skipmixin_key")
        assert _rerun(mallory, run_id, "push") == "failed", _failures(mallory, run_id)
        assert "NotApproved" in mallory.log(TRAINING, run_id, "push", _last_try(mallory, run_id, "push"))
    assert registry.versions() == versions and registry.champion().version == champion[0].version


def _overwrite_xcom(user, run_id: str, task: str, value, key: str = "return_value") -> None:
    from airflow_client.client import XComUpdateBody

    try:
        user.write_xcom(TRAINING, run_id, task, value, key=key)
    except ApiException as exists:  # the task left one: a User may update it as well
        assert exists.status == 409, exists
        user.api("XComApi").update_xcom_entry(TRAINING, task, run_id, key, XComUpdateBody(value=value, map_index=-1))


def _delete_xcom(user, run_id: str, task: str, key: str) -> None:
    try:
        user.api("XComApi").delete_xcom_entry(TRAINING, task, run_id, key)
    except ApiException as missing:
        assert missing.status == 404, missing


def _rerun(user, run_id: str, task: str, downstream: bool = False) -> str:
    """Clear `task` (as a User may) and wait until it has run again; its new state."""
    before = _last_try(user, run_id, task)
    user.clear(TRAINING, run_id, [task], downstream=downstream)

    def ran_again():
        instance = user.api("TaskInstanceApi").get_task_instance(TRAINING, run_id, task)
        state = instance.state.value if instance.state is not None else None
        if instance.try_number > before and state in ("success", "failed", "skipped", "upstream_failed"):
            return state
        return None
    return user.wait(ran_again, scaled(300), f"{task} of {run_id} to run again", every=2.0)


def _last_try(user, run_id: str, task: str, dag_id: str = TRAINING) -> int:
    return user.api("TaskInstanceApi").get_task_instance(dag_id, run_id, task).try_number


def test_an_artifact_swapped_in_the_bucket_and_xcom_is_refused(stack, champion):
    """Custody: someone who can write both XCom (a User) and the bucket replaces the test split and records
    its new sha256 in transform's XCom, then clears what follows: `train` refuses the record."""
    import boto3

    mallory = stack.user("mallory")
    _, run_id = champion
    recorded = mallory.read_xcom(TRAINING, run_id, "transform")
    split = recorded["splits"]["test"]
    env = stack.env
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    bucket = env.get("CROSS_SELL_S3_BUCKET", "cross-sell")
    body = s3.get_object(Bucket=bucket, Key=split["key"])["Body"].read() + b"\0"
    s3.put_object(Bucket=bucket, Key=split["key"], Body=body)
    import hashlib

    forged = json.loads(json.dumps(recorded))
    forged["splits"]["test"] = {**split, "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    _overwrite_xcom(mallory, run_id, "transform", forged)
    assert _rerun(mallory, run_id, "train", downstream=True) == "failed"
    log = mallory.log(TRAINING, run_id, "train", _last_try(mallory, run_id, "train"))
    assert "CustodyError" in log and "seal does not match" in log, log[-2000:]
    assert _registry(stack.env).champion().version == champion[0].version


def test_rollback_only_by_an_operator_and_forced_only_with_a_second_person(stack, champion):
    """Break 3: any user rolled the champion back, with `force` to any signed version."""
    from cross_sell.storage.signing import ManifestSigner
    from serving_support import publish, train_model

    mallory, oscar, alice = stack.user("mallory"), stack.user("oscar"), stack.user("alice")
    registry = _registry(stack.env)
    before = registry.champion()
    signer = ManifestSigner.from_file(stack.home / "signing" / "signing.key")
    publish(registry, "never-served", train_model(3), signer)  # signed, but never the champion
    run_id = mallory.trigger(ROLLBACK, {"version": "never-served", "reason": "mine", "force": True})
    assert mallory.wait_for_run(ROLLBACK, run_id, scaled(120)).state.value == "failed"
    assert mallory.states(ROLLBACK, run_id)["check_operator"] == "failed"
    assert "only the rollback operators" in mallory.log(ROLLBACK, run_id, "check_operator")

    run_id = oscar.trigger(ROLLBACK, {"version": "never-served", "reason": "unforced"})
    assert oscar.wait_for_run(ROLLBACK, run_id, scaled(120)).state.value == "failed"
    assert "never served as champion" in oscar.log(ROLLBACK, run_id, "rollback")

    reason = "<script>alert(1)</script> [click](javascript:alert(1))"
    run_id = oscar.trigger(ROLLBACK, {"version": "never-served", "reason": reason, "force": True})
    oscar.wait_for_state(ROLLBACK, run_id, "approve_forced_rollback", ("awaiting_input",), scaled(120),
                         settle=scaled(15))
    assert _status(lambda: oscar.respond(ROLLBACK, run_id, "approve_forced_rollback", "Approve")) == 403
    assert registry.champion().version == before.version
    alice.respond(ROLLBACK, run_id, "approve_forced_rollback", "Approve", "drill, agreed")
    assert oscar.wait_for_run(ROLLBACK, run_id, scaled(300)).state.value == "success", oscar.states(ROLLBACK, run_id)
    restored = registry.champion()
    assert (restored.version, restored.pointer["by"], restored.pointer["reason"]) == ("never-served", "oscar", reason)
    note = restored.pointer["note"]
    assert note["forced"] is True and note["approval"]["approved_by"] == "alice"
    assert note["approval"]["subject"] == {"action": "forced_rollback", "run_id": run_id, "version": "never-served"}
    # Back to the champion, by the operator: it served before, so no second person is needed.
    run_id = oscar.trigger(ROLLBACK, {"version": before.version, "reason": "drill over"})
    assert oscar.wait_for_run(ROLLBACK, run_id, scaled(300)).state.value == "success"
    assert registry.champion().version == before.version
