"""Command line: `python -m cross_sell COMMAND ...`; `--help` lists the commands (`COMMANDS`), each made by
its `_add_<command>` function and run by its `cmd_<command>` handler with the command's clients
(`cross_sell.clients.EnvClients`): parse, call the operation, print.

MongoDB is reached through MONGO_URI, S3 through the standard AWS_* variables (AWS_ENDPOINT_URL for
MinIO or a local server); bucket, prefix, database and collection come from the CROSS_SELL_* variables.
Registry versions are read only through the public key named by CROSS_SELL_SIGNING_PUBLIC_KEY.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path

from .clients import SIGNING_KEY_ENV, EnvClients, UsageError
from .errors import NothingToDo, NotRetryable
from .settings import mongo_uri


def _print(payload) -> None:
    print(json.dumps(payload, indent=2, default=str))


def cmd_load(args, clients: EnvClients) -> int:
    from .data import loader, synthetic

    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    collection = clients.collection(args.collection or clients.settings.mongo_collection)
    # Erased customers stay out, whatever file they are in (refused without the key if anyone was erased).
    erased = clients.suppression()
    started = time.perf_counter()
    if args.csv:  # checked whole, then loaded, a chunk at a time: memory does not grow with the file
        say(f"checking {args.csv} against the data contract, then upserting it into "
            f"{collection.database.name}.{collection.name} ...")
        stats = loader.load_csv(collection, args.csv, batch_size=args.batch_size, progress=not args.quiet,
                                suppression=erased)
    else:
        say(f"generating {args.synthetic:,} synthetic customers (seed {args.seed}) ...")
        frame = synthetic.generate(args.synthetic, seed=args.seed, first_id=args.first_id)
        say(f"upserting {len(frame):,} customers into {collection.database.name}.{collection.name} ...")
        stats = loader.upsert(collection, frame, batch_size=args.batch_size, progress=not args.quiet,
                              suppression=erased)
    _print({**stats.as_dict(), "seconds": round(time.perf_counter() - started, 2),
            "collection": f"{collection.database.name}.{collection.name}"})
    return 0


def _unpickled_estimator(path: str):
    """A local estimator file the user named with --model-file: the one place the CLI unpickles (a pickle
    runs code when loaded), only at the user's explicit word."""
    import joblib

    return joblib.load(path)


def cmd_evaluate(args, clients: EnvClients) -> int:
    from .data import loader
    from .model import evaluation

    frame = loader.read_csv(args.csv)
    if args.model_file:
        model, name = _unpickled_estimator(args.model_file), args.model_file
    else:
        version = clients.registry.resolve(args.model)
        served, _ = clients.registry.served_model(version)  # signed manifest, verified ONNX file: no pickle
        model, name = evaluation.ServedClassifier(served), version
    _print({"model": name, "csv": args.csv, "metrics": evaluation.score(model, frame)})
    return 0


def cmd_score(args, clients: EnvClients) -> int:
    """Score a file of customers with the champion (or a version, or a local estimator you trust)."""
    from datetime import datetime, timezone

    from .scoring import batch as scoring
    from .scoring import file_scoring

    if args.model_file:
        from .model import onnx_export
        from .model.onnx_model import OnnxModel

        # Run as the service would run it: converted to ONNX.
        estimator = _unpickled_estimator(args.model_file)
        model, version = OnnxModel(onnx_export.to_onnx(estimator), estimator.best_threshold_), args.model_file
    else:
        model, version, _ = scoring.served(clients.registry, args.model)
    _print(file_scoring.score_csv(args.csv, args.out, model, version, datetime.now(timezone.utc)))
    return 0


def cmd_load_outcomes(args, clients: EnvClients) -> int:
    """Outcomes of contacted customers (CSV: id, Response[, observed_at]) into the outcomes collection."""
    from .data import loader

    settings = clients.settings
    outcomes = loader.read_outcomes(args.csv, default_observed_at=args.observed_at)
    collection = clients.collection(settings.outcomes_collection)
    stats = loader.upsert_outcomes(collection, outcomes)
    unknown = loader.unknown_customers(clients.collection(settings.mongo_collection), outcomes["id"].tolist())
    stats["ids_matching_no_customer"] = len(unknown)
    if unknown:  # loaded all the same (the customer may come later), but said
        print(f"warning: {len(unknown):,} outcome(s) name no customer in {collection.database.name}."
              f"{settings.mongo_collection}, e.g. ids {unknown[:10]}", file=sys.stderr)
    _print({**stats, "collection": f"{collection.database.name}.{collection.name}"})
    return 0


def cmd_shadow(args, clients: EnvClients) -> int:
    """Name, clear or show the challenger in shadow, or report how it compares with the champion."""
    registry = clients.registry
    if args.action == "set":
        if not args.version:
            raise UsageError("shadow set needs a VERSION")
        _print(registry.set_shadow(args.version, clients.signer, reason=args.reason))
    elif args.action == "clear":
        registry.clear_shadow(clients.signer)
        _print({"shadow": None})
    elif args.action == "show":
        shadow = registry.shadow()
        _print({"shadow": shadow.pointer if shadow else None})
    else:
        from datetime import date

        from .monitoring import shadow_report

        since = date.fromisoformat(args.since) if args.since else None
        outcomes = customers = None
        if args.mongo_uri:  # only when asked: the realized metrics need outcomes and customers
            outcomes = clients.collection(clients.settings.outcomes_collection)
            customers = clients.collection(clients.settings.mongo_collection)
        report = shadow_report.report(registry, since, outcomes, customers)
        if report is None:
            print("no sampled rows scored in shadow yet (is a shadow set, and SERVING_SAMPLE_RATE > 0?)",
                  file=sys.stderr)
            return 2
        _print(report)
    return 0


def cmd_keygen(args, clients: EnvClients) -> int:
    """A new model-signing key pair: the private key for the training side, the public one for readers."""
    from .governance.custody import KEY_ENV, make_key
    from .storage.signing import generate_key_pair

    if (Path(args.directory) / "signing.key").exists() and not args.force:
        print(f"error: {Path(args.directory) / 'signing.key'} exists (--force replaces it)", file=sys.stderr)
        return 2
    private, public = generate_key_pair(args.directory)
    sealing = make_key(Path(args.directory) / "custody.key")
    _print({"private_key": str(private), "public_key": str(public), "custody_key": str(sealing),
            "workers": f"{KEY_ENV}={sealing} (every Airflow worker; nobody else)",
            "training_side": f"Airflow connection {clients.settings.signing_conn_id!r}: password = the PEM text of "
                             f"{private.name}, or extra {{\"key_file\": \"<path>\"}}",
            "readers": f"CROSS_SELL_SIGNING_PUBLIC_KEY={public}"})
    return 0


def cmd_champion(args, clients: EnvClients) -> int:
    registry = clients.registry
    if args.action == "show":
        champion = registry.champion()
        if champion is None:
            _print({"champion": None, "pointer": registry.uri(registry.pointer_key)})
        else:
            _print({"pointer": champion.pointer, "manifest": registry.manifest(champion.version),
                    "audit_problems": [p.message for p in registry.audit_problems(champion)]
                    + registry.hidden_audit_records()})
    elif args.action == "history":
        _print(registry.history())
    else:
        if not args.version:
            raise UsageError("rollback needs a VERSION")
        if not args.by:
            raise UsageError("rollback needs --by NAME (who decided: recorded in the audit trail)")
        # Break-glass: the rollback DAG is the governed path (its run records the user and re-scores).
        _print(registry.rollback(args.version, clients.signer, reason=args.reason, by=args.by, force=args.force))
        print(f"champion is {args.version}; the CRM's scores still come from the previous model until the "
              "scoring DAG runs: airflow dags trigger cross_sell_scoring (or roll back with the "
              "cross_sell_rollback DAG, which re-scores by itself)", file=sys.stderr)
    return 0


def cmd_erase(args, clients: EnvClients) -> int:
    """Erase customers everywhere (GDPR art. 17): MongoDB, every object version, a signed receipt; or, with
    --verify, check every receipt (exit 1 on a problem)."""
    from .privacy import erasure, receipts

    if args.verify:  # every receipt checked, against the suppression list too
        records, found = receipts.check(clients.registry.s3, clients.settings.s3_bucket, clients.settings.s3_prefix,
                                        clients.registry.verifier,
                                        clients.collection(clients.settings.erased_collection))
        _print({"receipts_verified": len(records), "problems": found})
        return 1 if found else 0
    if not args.ids_file or not args.reason:
        raise UsageError("erase needs --ids-file and --reason (or --verify)")
    done = erasure.erase_ids(clients, erasure.read_ids(args.ids_file), request=args.request or Path(args.ids_file).stem,
                             reason=args.reason, by=args.by, dry_run=args.dry_run)
    receipt = done.receipt()
    _print({**{k: v for k, v in receipt.items() if k != "customer_hashes"}, "receipt_key": done.receipt_key})
    return 0


def cmd_retention(args, clients: EnvClients) -> int:
    """The retention policy: its lifecycle rules, what it would delete now (plan), or delete it (apply)."""
    from .privacy import retention

    settings = clients.settings
    policy = retention.Policy.from_settings(settings)
    if args.action == "rules":
        _print(retention.lifecycle_rules(policy, settings.s3_prefix))
        return 0
    if args.action == "apply":
        _print(retention.run(clients, by=args.by))
        return 0
    registry = clients.housekeeping_registry
    planned = retention.plan(registry.s3, settings.s3_bucket, settings.s3_prefix, registry, policy)
    _print({"policy": policy.__dict__, **planned.summary()})
    return 0


def cmd_erasure_key(args, clients: EnvClients) -> int:
    from .privacy.suppression import make_key

    if Path(args.file).exists() and not args.force:
        raise UsageError(f"{args.file} exists (--force replaces it: every erased customer's hash would then "
                         "be unrecognisable)")
    _print({"erasure_key": str(make_key(args.file)), "set": f"CROSS_SELL_ERASURE_KEY_FILE={args.file}"})
    return 0


def cmd_skew(args, clients: EnvClients) -> int:
    """Sampled serving rows vs the training profile of the champion (or --version)."""
    from datetime import date

    from .monitoring import skew
    from .monitoring.drift import too_few

    registry, settings = clients.registry, clients.settings
    since = date.fromisoformat(args.since) if args.since else None
    samples = skew.read_samples(registry.s3, settings.s3_bucket, settings.s3_prefix, since)
    if samples.empty:
        print(f"no sampled serving rows under {registry.uri(skew.samples_prefix(settings.s3_prefix))}"
              f"{' since ' + args.since if args.since else ''} (is SERVING_SAMPLE_RATE > 0?)", file=sys.stderr)
        return 2
    if too_few(len(samples)):
        print(f"train/serve skew: {len(samples):,} sampled serving rows: {too_few(len(samples))}; nothing judged")
        return 0
    try:
        version, found = skew.report(registry, samples, args.version, json.loads(args.thresholds))
    except LookupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"train/serve skew: {len(samples):,} sampled serving rows vs the training data of {version} "
          f"({found.reference_rows:,} rows)")
    print(found.table())
    print(f"drifted: {', '.join(found.drifted) or 'none'}")
    return 1 if found.drifted and args.fail_on_skew else 0


def cmd_reproduce(args, clients: EnvClients) -> int:
    """Retrain VERSION from its recorded snapshot, seed and params; exit 1 when the result differs."""
    from .operations.reproduce import reproduce, summary

    found = reproduce(clients.registry, args.version)
    _print(found)
    print(f"{args.version}: {summary(found)}", file=sys.stderr)
    return 0 if found["identical"] else 1


def cmd_lineage(args, clients: EnvClients) -> int:
    """Upstream and downstream of VERSION (see cross_sell.governance.lineage)."""
    from .governance.lineage import of_version

    _print(of_version(clients.registry, args.version, clients.settings.s3_prefix))
    return 0


def _model_arguments(parser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default="champion", metavar="champion|VERSION",
                       help="a model of the registry: its signed manifest and verified ONNX file (default: champion)")
    which.add_argument("--model-file", metavar="PATH",
                       help="a local joblib estimator instead: this UNPICKLES the file, which runs any code it "
                            "holds; only for a file you made yourself")


def _signing_argument(parser) -> None:
    parser.add_argument("--signing-key", metavar="FILE",
                        help=f"the model-signing private key that signs the pointer (default: ${SIGNING_KEY_ENV})")


def _add_load(sub) -> None:
    load = sub.add_parser("load", help="load customers into MongoDB (idempotent upsert on id)")
    source = load.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="a Kaggle-format CSV (train.csv or the shared sample)")
    source.add_argument("--synthetic", type=int, metavar="N", help="generate N synthetic customers")
    load.add_argument("--seed", type=int, default=0)
    load.add_argument("--first-id", type=int, default=1, help="id of the first synthetic customer")
    load.add_argument("--mongo-uri", default=mongo_uri())
    load.add_argument("--database")
    load.add_argument("--collection")
    load.add_argument("--batch-size", type=int, default=5_000)
    load.add_argument("--quiet", action="store_true", help="no progress bar")
    load.set_defaults(handler=cmd_load)


def _add_evaluate(sub) -> None:
    evaluate = sub.add_parser("evaluate", help="metrics of a model on a labelled Kaggle-format CSV")
    evaluate.add_argument("--csv", required=True)
    _model_arguments(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)


def _add_score(sub) -> None:
    score = sub.add_parser("score", help="score a Kaggle-format CSV of customers into OUT (id, probability, label)")
    score.add_argument("--csv", required=True)
    score.add_argument("--out", required=True)
    _model_arguments(score)
    score.set_defaults(handler=cmd_score)


def _add_champion(sub) -> None:
    champion = sub.add_parser("champion", help="show the champion, its history, or roll back")
    champion.add_argument("action", choices=("show", "history", "rollback"))
    champion.add_argument("version", nargs="?")
    champion.add_argument("--reason", default="manual rollback")
    champion.add_argument("--by", help="rollback: who decided (recorded in the audit trail; required)")
    champion.add_argument("--force", action="store_true",
                          help="rollback: also to a version that never served, or the current shadow")
    _signing_argument(champion)
    champion.set_defaults(handler=cmd_champion)


def _add_skew(sub) -> None:
    skew = sub.add_parser("skew", help="compare sampled serving rows with the champion's training data")
    skew.add_argument("--since", help="only samples from this day on (YYYY-MM-DD)")
    skew.add_argument("--version", help="compare with this model's training data instead of the champion's")
    skew.add_argument("--thresholds", default="{}", help='per-feature limits as JSON, e.g. \'{"Age": 0.1}\'')
    skew.add_argument("--fail-on-skew", action="store_true", help="exit 1 when a feature crosses its limit")
    skew.set_defaults(handler=cmd_skew)


def _add_outcomes(sub) -> None:
    outcomes = sub.add_parser("load-outcomes", help="load outcomes (id, Response[, observed_at]) for monitoring")
    outcomes.add_argument("--csv", required=True)
    outcomes.add_argument("--observed-at", help="for rows without observed_at (ISO date or time; default: now)")
    outcomes.add_argument("--mongo-uri", default=mongo_uri())
    outcomes.add_argument("--database")
    outcomes.set_defaults(handler=cmd_load_outcomes)


def _add_shadow(sub) -> None:
    shadow = sub.add_parser("shadow", help="the challenger scored in shadow: set VERSION, clear, show, report")
    shadow.add_argument("action", choices=("set", "clear", "show", "report"))
    shadow.add_argument("version", nargs="?")
    shadow.add_argument("--reason", default="named by hand")
    shadow.add_argument("--since", help="report: samples from this day on (YYYY-MM-DD)")
    shadow.add_argument("--mongo-uri", default=os.environ.get("MONGO_URI"),
                        help="report: where outcomes and customers are, for both models' realized metrics")
    _signing_argument(shadow)
    shadow.set_defaults(handler=cmd_shadow)


def _add_erase(sub) -> None:
    erase = sub.add_parser("erase", help="erase customers everywhere (GDPR art. 17), with a signed receipt")
    erase.add_argument("--ids-file", help="customer ids, one per line")
    erase.add_argument("--reason", help="why (e.g. the ticket of the request)")
    erase.add_argument("--verify", action="store_true",
                       help="check every erasure receipt instead (deleted, overwritten, unsigned, incomplete, or "
                            "not matching the suppression list): exit 1 on a problem")
    erase.add_argument("--by", default=getpass.getuser(), help="who asked for it (recorded; default: you)")
    erase.add_argument("--request", help="the request's name in the receipt (default: the file's name)")
    erase.add_argument("--dry-run", action="store_true", help="find and count everything, change nothing")
    erase.add_argument("--mongo-uri", default=mongo_uri())
    _signing_argument(erase)
    erase.set_defaults(handler=cmd_erase)


def _add_retention(sub) -> None:
    retention = sub.add_parser("retention", help="the retention policy: rules (S3 lifecycle), plan, or apply")
    retention.add_argument("action", choices=("rules", "plan", "apply"))
    retention.add_argument("--by", default=getpass.getuser(), help="apply: who (recorded)")
    retention.set_defaults(handler=cmd_retention)


def _add_erasure_key(sub) -> None:
    erasure_key = sub.add_parser("erasure-key", help="make the secret key of the erased customers' hashes")
    erasure_key.add_argument("file")
    erasure_key.add_argument("--force", action="store_true")
    erasure_key.set_defaults(handler=cmd_erasure_key)


def _add_reproduce(sub) -> None:
    reproduce = sub.add_parser("reproduce", help="retrain VERSION from its recorded snapshot, seed and params, "
                                                 "and say whether the ONNX file and metrics come out the same")
    reproduce.add_argument("version")
    reproduce.set_defaults(handler=cmd_reproduce)


def _add_lineage(sub) -> None:
    lineage = sub.add_parser("lineage", help="where VERSION came from (data, validation, params, approver) and "
                                             "where it went (champion periods, scoring runs, campaign lists)")
    lineage.add_argument("version")
    lineage.set_defaults(handler=cmd_lineage)


def _add_keygen(sub) -> None:
    keygen = sub.add_parser("keygen", help="make a model-signing key pair (signing.key, signing.pub) and the "
                                           "workers' custody key (custody.key)")
    keygen.add_argument("directory")
    keygen.add_argument("--force", action="store_true", help="replace an existing pair")
    keygen.set_defaults(handler=cmd_keygen)


# In the order `--help` lists them.
COMMANDS = (_add_load, _add_evaluate, _add_score, _add_champion, _add_skew, _add_outcomes, _add_shadow,
            _add_erase, _add_retention, _add_erasure_key, _add_reproduce, _add_lineage, _add_keygen)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cross_sell", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .storage.registry import ChampionChanged

    try:
        with EnvClients.from_env(mongo_uri=getattr(args, "mongo_uri", None),
                                 signing_key=getattr(args, "signing_key", None),
                                 database=getattr(args, "database", None)) as clients:
            return args.handler(args, clients)
    except (NotRetryable, NothingToDo, ChampionChanged) as error:  # bad input, an untrusted model, no champion
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
