"""Issue #30: the deployment policy and the custody seal, without servers.

The same controls are attacked through Airflow's REST API by tests/test_abuse_cases.py; these tests pin the
rules themselves (what loosens a gate, what a seal covers) so `make test-fast` catches a regression.
"""

import pytest

from cross_sell.governance.custody import SEAL, Custody, CustodyKeyMissing
from cross_sell.governance.policy import Policy, PolicyError
from cross_sell.model.evaluation import Gate, UnreadableChampion
from cross_sell.storage.objects import CustodyError

STRICT = Policy(require_approval=True, min_roc_auc=0.8, promotion_margin=0.01, max_equalized_odds_difference=0.1,
                exclude_features=("Gender",))


def test_the_policy_is_read_from_the_environment_only():
    policy = Policy.from_env({"CROSS_SELL_REQUIRE_APPROVAL": "true", "CROSS_SELL_APPROVERS": "alice, 7",
                              "CROSS_SELL_MIN_ROC_AUC": "0.8", "CROSS_SELL_ROLLBACK_OPERATORS": "ops",
                              "CROSS_SELL_EXCLUDE_FEATURES": "Gender"})
    assert policy.require_approval and policy.approvers == ("alice", "7") and policy.min_roc_auc == 0.8
    assert policy.rollback_operators == ("ops",) and policy.exclude_features == ("Gender",)
    assert Policy.from_env({}) == Policy()
    with pytest.raises(PolicyError, match="not a boolean"):  # a typo never reads as "off"
        Policy.from_env({"CROSS_SELL_REQUIRE_APPROVAL": "ture"})


@pytest.mark.parametrize("param, value, setting", [
    ("require_approval", False, "CROSS_SELL_REQUIRE_APPROVAL=true"),
    ("min_roc_auc", 0.5, "CROSS_SELL_MIN_ROC_AUC=0.8"),
    ("promotion_margin", 0.0, "CROSS_SELL_PROMOTION_MARGIN=0.01"),
    ("max_equalized_odds_difference", 1.0, "CROSS_SELL_MAX_EQUALIZED_ODDS_DIFFERENCE=0.1"),
    ("exclude_features", [], "CROSS_SELL_EXCLUDE_FEATURES=Gender"),
    ("replace_unreadable_champion", True, "CROSS_SELL_ALLOW_REPLACE_UNREADABLE_CHAMPION=false"),
])
def test_a_run_may_not_loosen_a_gate(param, value, setting):
    """Issue #30 break 1: `require_approval: false`, a fairness cap of 1.0, a lower floor or margin and
    replacing an unreadable champion were run options."""
    with pytest.raises(PolicyError, match=f"{param}=.*{setting}"):
        STRICT.check({param: value})


def test_a_run_may_tighten_every_gate_and_its_gate_is_the_stricter():
    tighter = {"require_approval": True, "min_roc_auc": 0.9, "promotion_margin": 0.05,
               "max_equalized_odds_difference": 0.05, "exclude_features": ["Gender", "Age"],
               "replace_unreadable_champion": False}
    STRICT.check(tighter)
    gate = Gate.for_run(STRICT, tighter)
    assert (gate.min_roc_auc, gate.margin, gate.max_equalized_odds_difference, gate.replace_unreadable) == (
        0.9, 0.05, 0.05, False)
    assert gate.policy == STRICT.record() and gate.policy["require_approval"] is True
    assert Gate.for_run(STRICT, {}).min_roc_auc == 0.8  # no params: the policy itself
    allowed = Policy(allow_replace_unreadable_champion=True)
    assert Gate.for_run(allowed, {"replace_unreadable_champion": True}).replace_unreadable


def test_the_gate_fails_closed_on_a_champion_it_cannot_trust_unless_policy_allows_replacing_it():
    """The fail-closed rule is the gate's (#31): the evaluate stage only asks it."""
    strict = Gate.for_run(STRICT, {})
    assert strict.replaceable("v1", None) is None  # a trusted champion: nothing to replace
    with pytest.raises(UnreadableChampion, match="signature does not verify. The promotion gate fails closed"):
        strict.replaceable("v1", "signature does not verify")
    allowed = Gate.for_run(Policy(allow_replace_unreadable_champion=True), {"replace_unreadable_champion": True})
    assert allowed.replaceable("v1", "signature does not verify") == {"version": "v1",
                                                                      "reason": "signature does not verify"}
    # Policy allows it, but this run did not ask: still closed.
    with pytest.raises(UnreadableChampion):
        Gate.for_run(Policy(allow_replace_unreadable_champion=True), {}).replaceable("v1", "unreadable")


def test_maker_checker_and_rollback_operators():
    assert Policy().check_approver("alice", "bob") is False
    with pytest.raises(PolicyError, match="maker-checker"):
        Policy().check_approver("alice", "alice")
    assert Policy(allow_self_approval=True).check_approver("alice", "alice") is True  # allowed, and recorded
    with pytest.raises(PolicyError, match="not an approver"):
        Policy(approvers=("carol",)).check_approver("alice", None)
    Policy(rollback_operators=("ops",)).check_rollback_operator("ops")
    for user in ("alice", None):
        with pytest.raises(PolicyError, match="only the rollback operators"):
            Policy(rollback_operators=("ops",)).check_rollback_operator(user)
    with pytest.raises(PolicyError, match="nobody"):
        Policy().check_rollback_operator("admin")


def test_a_sealed_record_opens_only_unchanged_from_its_own_dag_run_and_task(monkeypatch):
    """Issue #30, custody: XCom is writable by any User; what a task hands on is sealed with the workers' key,
    bound to the DAG, the run and the task that wrote it (a record of another task cannot fill an input)."""
    custody = Custody(b"k" * 32)
    record = {"snapshot": {"key": "vi/runs/r1/raw/snapshot.parquet", "sha256": "a" * 64, "bytes": 10}, "rows": 3}
    sealed = custody.seal(record, "training", "r1", "extract")
    assert sealed[SEAL]["task_id"] == "extract"
    assert custody.open(sealed, "x", dag_id="training", run_id="r1", task_id="extract") == record
    assert custody.open(sealed, "x", task_id="extract") == record  # any run: an Asset event's record
    changed = {**sealed, "snapshot": {**record["snapshot"], "sha256": "b" * 64}}
    other_key = Custody(b"x" * 32).seal(record, "training", "r1", "extract")
    for forged, why in ((record, "no seal"), (changed, "does not match"), (other_key, "does not match")):
        with pytest.raises(CustodyError, match=why):
            custody.open(forged, "x", run_id="r1")
    for where, why in (({"run_id": "r2"}, "run 'r1', not 'r2'"), ({"task_id": "train"}, "task 'extract'"),
                       ({"dag_id": "scoring"}, "dag 'training'")):
        with pytest.raises(CustodyError, match=why):
            custody.open(sealed, "x", **where)
    monkeypatch.delenv("CROSS_SELL_CUSTODY_KEY_FILE")
    with pytest.raises(CustodyKeyMissing, match="CROSS_SELL_CUSTODY_KEY_FILE is not set"):  # fails closed
        Custody.from_env()


def test_a_task_refuses_an_unsealed_input_and_a_loosening_conf(monkeypatch):
    """What every task does first (`stage_run`): the policy check, then each XCom input's seal."""
    import airflow.sdk
    from airflow.sdk.exceptions import AirflowFailException

    from cross_sell.params import TrainingParams
    from cross_sell_airflow.stage import stage_run

    class Run:
        run_after = None
        conf: dict = {}

    class TaskInstance:
        task_id = "evaluate"
        dag_id = "cross_sell_training"

    params = {"seed": 1, "min_roc_auc": 0.5}  # a stale default below the policy: judged by the policy
    monkeypatch.setattr(airflow.sdk, "get_current_context",
                        lambda: {"run_id": "r1", "dag_run": Run(), "params": params, "ti": TaskInstance()})
    custody = Custody.from_env()
    decision = {"bless": False, "reason": "kept"}
    with stage_run(TrainingParams) as run:
        sealed = run.done(decision)
    received = dict(sealed)
    with stage_run(TrainingParams, evaluate=received) as run:
        assert received == decision and run.sealed_inputs == [sealed]  # opened in place
    forged = {**sealed, "bless": True}
    with pytest.raises(AirflowFailException, match="CustodyError: .*seal does not match"), \
            stage_run(TrainingParams, evaluate=forged):
        pass
    with pytest.raises(AirflowFailException, match="carries no seal"), \
            stage_run(TrainingParams, evaluate={"bless": True}):
        pass
    with pytest.raises(AirflowFailException, match="sealed by task 'evaluate', not 'train'"), \
            stage_run(TrainingParams, train=dict(sealed)):  # a genuine record in another task's slot
        pass
    assert custody.open(sealed, "x", run_id="r1") == decision
    monkeypatch.setenv("CROSS_SELL_MIN_ROC_AUC", "0.8")
    with stage_run(TrainingParams) as run:  # defaults are not the run's choice: tightened, not refused
        assert run.params["min_roc_auc"] == 0.8
    monkeypatch.setenv("CROSS_SELL_REQUIRE_APPROVAL", "true")
    Run.conf = {"require_approval": False}
    with pytest.raises(AirflowFailException, match="require_approval=False switches off the deployment policy "
                                                   "CROSS_SELL_REQUIRE_APPROVAL=true"), stage_run(TrainingParams):
        pass


def test_the_policy_may_restrict_the_model_family():
    """Issue #33: the model family is a deployment setting (CROSS_SELL_MODEL) and the training DAG's `model` param;
    CROSS_SELL_ALLOWED_MODELS lists the families a run may choose. A run's own choice outside it is refused, a
    default outside it (a stale CROSS_SELL_MODEL) is tightened to the first allowed family."""
    from cross_sell import params as run_params
    from cross_sell.model import model_families
    from cross_sell.settings import Settings

    policy = Policy.from_env({"CROSS_SELL_ALLOWED_MODELS": "lightgbm, hgb"})
    assert policy.allowed_models == ("lightgbm", "hgb") and policy.record()["allowed_models"] == ["lightgbm", "hgb"]
    policy.check({"model": "hgb"})
    with pytest.raises(PolicyError, match="model='lightgbm_catboost' is not among the deployment policy "
                                          "CROSS_SELL_ALLOWED_MODELS=lightgbm,hgb"):
        policy.check({"model": "lightgbm_catboost"})
    assert policy.tightened({"model": "lightgbm_catboost"})["model"] == "lightgbm"
    assert policy.tightened({"model": "hgb"})["model"] == "hgb"
    Policy().check({"model": "lightgbm_catboost"})  # unset: any family

    with pytest.raises(model_families.UnknownFamily, match="unknown model family 'xgboost'"):
        model_families.get("xgboost")
    run_params.check({"model": "champion"})  # the scoring DAG's `model` is a registry version, not a family
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, {"CROSS_SELL_MODEL": "hgb"}):
        assert Settings.from_env().model == "hgb"


def test_a_run_conf_choosing_a_family_the_policy_does_not_allow_fails_its_first_task(monkeypatch):
    """The check every task makes first (`stage_run`), with the policy from the workers' environment."""
    import airflow.sdk
    from airflow.sdk.exceptions import AirflowFailException

    from cross_sell.params import TrainingParams
    from cross_sell_airflow.stage import stage_run

    class Run:
        run_after = None
        conf = {"model": "lightgbm_catboost"}

    class TaskInstance:
        task_id = "train"
        dag_id = "cross_sell_training"

    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {
        "run_id": "r1", "dag_run": Run(), "params": {"seed": 1, "model": "lightgbm_catboost"}, "ti": TaskInstance()})
    monkeypatch.setenv("CROSS_SELL_ALLOWED_MODELS", "lightgbm")
    with pytest.raises(AirflowFailException, match="model='lightgbm_catboost' is not among the deployment policy "
                                                   "CROSS_SELL_ALLOWED_MODELS=lightgbm"), stage_run(TrainingParams):
        pass
    Run.conf = {}  # the DAG's default (CROSS_SELL_MODEL), not the run's choice: tightened to an allowed family
    with stage_run(TrainingParams) as run:
        assert run.params["model"] == "lightgbm"
