"""What each CLI command does: call its operation (the one a DAG task calls too) with the command's clients
and say what came of it. `__main__.py` declares the commands and their arguments; each `<command>` here
gets the parsed arguments and the clients and returns an `Answer` (or the payload of one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clients import EnvClients, UsageError
from .errors import NothingToDo


@dataclass(frozen=True)
class Answer:
    payload: Any  # printed: JSON, or as it is when text
    code: int = 0  # the exit status: 1 when what was checked has a problem
    note: str | None = None  # said on stderr beside it


def _unpickled_estimator(path: str | None):
    """A local estimator file the user named with --model-file: the one place the CLI unpickles (a pickle
    runs code when loaded), only at the user's explicit word."""
    if not path:
        return None
    import joblib

    return joblib.load(path)


def load(args, clients: EnvClients):
    import sys

    from .data import loader

    return loader.load_customers(clients, args.csv, args.synthetic or 0, seed=args.seed, first_id=args.first_id,
                                 collection=args.collection, batch_size=args.batch_size, progress=not args.quiet,
                                 say=None if args.quiet else lambda text: print(text, file=sys.stderr, flush=True))


def evaluate(args, clients: EnvClients):
    from .model import evaluation

    return evaluation.evaluate_csv(clients, args.csv, args.model, _unpickled_estimator(args.model_file),
                                   args.model_file)


def score(args, clients: EnvClients):
    from .scoring import file_scoring

    return file_scoring.score_file(clients, args.csv, args.out, args.model, _unpickled_estimator(args.model_file),
                                   args.model_file)


def load_outcomes(args, clients: EnvClients) -> Answer:
    from .data import loader

    stats, unknown = loader.load_outcome_file(clients, args.csv, args.observed_at)
    # loaded all the same (the customer may come later), but said
    return Answer(stats, note=f"warning: {len(unknown):,} outcome(s) name no customer in "
                              f"{clients.settings.mongo_collection}, e.g. ids {unknown[:10]}" if unknown else None)


def shadow(args, clients: EnvClients):
    from .monitoring import shadow_report

    registry = clients.registry
    if args.action == "set":
        if not args.version:
            raise UsageError("shadow set needs a VERSION")
        return registry.set_shadow(args.version, clients.signer, reason=args.reason)
    if args.action == "clear":
        registry.clear_shadow(clients.signer)
        return {"shadow": None}
    if args.action == "show":
        found = registry.shadow()
        return {"shadow": found.pointer if found else None}
    report = shadow_report.run(clients, args.since, realized=bool(args.mongo_uri))
    if report is None:
        raise NothingToDo("no sampled rows scored in shadow yet (is a shadow set, and SERVING_SAMPLE_RATE > 0?)")
    return report


def champion(args, clients: EnvClients):
    registry = clients.registry
    if args.action == "show":
        return registry.status()
    if args.action == "history":
        return registry.history()
    if not args.version:
        raise UsageError("rollback needs a VERSION")
    if not args.by:
        raise UsageError("rollback needs --by NAME (who decided: recorded in the audit trail)")
    # Break-glass, for the holder of the signing key: the rollback DAG is the governed path (policy's
    # operators, a second person for a forced rollback; its run records the user and re-scores).
    return Answer(registry.rollback(args.version, clients.signer, reason=args.reason, by=args.by, force=args.force),
                  note=f"champion is {args.version}; the CRM's scores still come from the previous model until the "
                       "scoring DAG runs: airflow dags trigger cross_sell_scoring (or roll back with the "
                       "cross_sell_rollback DAG, which re-scores by itself)")


def erase(args, clients: EnvClients):
    from .privacy import erasure, receipts

    if args.verify:  # every receipt checked, against the suppression list too; exit 1 on a problem
        checked = receipts.verify(clients)
        return Answer(checked, code=1 if checked["problems"] else 0)
    if not args.ids_file or not args.reason:
        raise UsageError("erase needs --ids-file and --reason (or --verify)")
    done = erasure.erase_ids(clients, erasure.read_ids(args.ids_file), request=args.request or Path(args.ids_file).stem,
                             reason=args.reason, by=args.by, dry_run=args.dry_run)
    return {**{k: v for k, v in done.receipt().items() if k != "customer_hashes"}, "receipt_key": done.receipt_key}


def retention(args, clients: EnvClients):
    from .privacy import retention as policy

    if args.action == "rules":
        return policy.lifecycle_rules(policy.Policy.from_settings(clients.settings), clients.settings.s3_prefix)
    return policy.run(clients, by=args.by) if args.action == "apply" else policy.planned(clients)


def erasure_key(args, clients: EnvClients):
    from .privacy.suppression import make_key

    made = make_key(args.file, replace=args.force)
    return {"erasure_key": str(made), "set": f"CROSS_SELL_ERASURE_KEY_FILE={args.file}"}


def skew(args, clients: EnvClients) -> Answer:
    from .monitoring import skew as serving_skew

    checked = serving_skew.check(clients, args.since, args.version, args.thresholds)
    drifted = checked.found is not None and checked.found.drifted
    return Answer(checked.text(), code=1 if drifted and args.fail_on_skew else 0)


def reproduce(args, clients: EnvClients) -> Answer:
    from .operations.reproduce import reproduce as rebuild
    from .operations.reproduce import summary

    found = rebuild(clients.registry, args.version)
    return Answer(found, code=0 if found["identical"] else 1, note=f"{args.version}: {summary(found)}")


def lineage(args, clients: EnvClients):
    from .governance.lineage import of_version

    return of_version(clients.registry, args.version, clients.settings.s3_prefix)


def keygen(args, clients: EnvClients):
    from .governance.custody import keygen as make_keys

    return make_keys(args.directory, clients.settings.signing_conn_id, force=args.force)
