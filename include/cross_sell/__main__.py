"""Command line: `python -m cross_sell COMMAND ...`; `--help` lists the commands (`COMMANDS`), each made by
its `_add_<command>` function and run by its `cmd_<command>` handler with the command's clients
(`cross_sell.clients.EnvClients`): parse, call the operation (the one a DAG task calls too), print.

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
from datetime import date
from pathlib import Path

from .clients import SIGNING_KEY_ENV, EnvClients, UsageError
from .errors import NothingToDo, NotRetryable
from .settings import mongo_uri


def _print(payload) -> None:
    print(json.dumps(payload, indent=2, default=str))


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def _limits(text: str) -> dict:
    try:
        limits = json.loads(text)
    except ValueError:
        limits = None
    if not isinstance(limits, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object of feature limits, e.g. '{{\"Age\": 0.1}}', "
                                         f"got {text!r}")
    return limits


def _whole(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low:,} to {high:,}, got {text!r}")
        return value
    return parse


def _unpickled_estimator(path: str | None):
    """A local estimator file the user named with --model-file: the one place the CLI unpickles (a pickle
    runs code when loaded), only at the user's explicit word."""
    if not path:
        return None
    import joblib

    return joblib.load(path)


def cmd_load(args, clients: EnvClients) -> int:
    from .data import loader

    _print(loader.load_customers(clients, args.csv, args.synthetic or 0, seed=args.seed, first_id=args.first_id,
                                 collection=args.collection, batch_size=args.batch_size, progress=not args.quiet,
                                 say=None if args.quiet else lambda text: print(text, file=sys.stderr, flush=True)))
    return 0


def cmd_evaluate(args, clients: EnvClients) -> int:
    from .model import evaluation

    _print(evaluation.evaluate_csv(clients, args.csv, args.model, _unpickled_estimator(args.model_file),
                                   args.model_file))
    return 0


def cmd_score(args, clients: EnvClients) -> int:
    from .scoring import file_scoring

    _print(file_scoring.score_file(clients, args.csv, args.out, args.model, _unpickled_estimator(args.model_file),
                                   args.model_file))
    return 0


def cmd_load_outcomes(args, clients: EnvClients) -> int:
    from .data import loader

    stats, unknown = loader.load_outcome_file(clients, args.csv, args.observed_at)
    if unknown:  # loaded all the same (the customer may come later), but said
        print(f"warning: {len(unknown):,} outcome(s) name no customer in {clients.settings.mongo_collection}, "
              f"e.g. ids {unknown[:10]}", file=sys.stderr)
    _print(stats)
    return 0


def cmd_shadow(args, clients: EnvClients) -> int:
    from .monitoring import shadow_report

    registry = clients.registry
    if args.action == "set" and not args.version:
        raise UsageError("shadow set needs a VERSION")
    if args.action == "set":
        _print(registry.set_shadow(args.version, clients.signer, reason=args.reason))
    elif args.action == "clear":
        registry.clear_shadow(clients.signer)
        _print({"shadow": None})
    elif args.action == "show":
        shadow = registry.shadow()
        _print({"shadow": shadow.pointer if shadow else None})
    else:
        report = shadow_report.run(clients, args.since, realized=bool(args.mongo_uri))
        if report is None:
            raise NothingToDo("no sampled rows scored in shadow yet (is a shadow set, and SERVING_SAMPLE_RATE > 0?)")
        _print(report)
    return 0


def cmd_champion(args, clients: EnvClients) -> int:
    registry = clients.registry
    if args.action == "show":
        _print(registry.status())
    elif args.action == "history":
        _print(registry.history())
    else:
        if not args.version:
            raise UsageError("rollback needs a VERSION")
        if not args.by:
            raise UsageError("rollback needs --by NAME (who decided: recorded in the audit trail)")
        # Break-glass, for the holder of the signing key: the rollback DAG is the governed path (policy's
        # operators, a second person for a forced rollback; its run records the user and re-scores).
        _print(registry.rollback(args.version, clients.signer, reason=args.reason, by=args.by, force=args.force))
        print(f"champion is {args.version}; the CRM's scores still come from the previous model until the "
              "scoring DAG runs: airflow dags trigger cross_sell_scoring (or roll back with the "
              "cross_sell_rollback DAG, which re-scores by itself)", file=sys.stderr)
    return 0


def cmd_erase(args, clients: EnvClients) -> int:
    from .privacy import erasure, receipts

    if args.verify:  # every receipt checked, against the suppression list too; exit 1 on a problem
        checked = receipts.verify(clients)
        _print(checked)
        return 1 if checked["problems"] else 0
    if not args.ids_file or not args.reason:
        raise UsageError("erase needs --ids-file and --reason (or --verify)")
    done = erasure.erase_ids(clients, erasure.read_ids(args.ids_file), request=args.request or Path(args.ids_file).stem,
                             reason=args.reason, by=args.by, dry_run=args.dry_run)
    _print({**{k: v for k, v in done.receipt().items() if k != "customer_hashes"}, "receipt_key": done.receipt_key})
    return 0


def cmd_retention(args, clients: EnvClients) -> int:
    from .privacy import retention

    if args.action == "rules":
        _print(retention.lifecycle_rules(retention.Policy.from_settings(clients.settings), clients.settings.s3_prefix))
    else:
        _print(retention.run(clients, by=args.by) if args.action == "apply" else retention.planned(clients))
    return 0


def cmd_erasure_key(args, clients: EnvClients) -> int:
    from .privacy.suppression import make_key

    if Path(args.file).exists() and not args.force:
        raise UsageError(f"{args.file} exists (--force replaces it: every erased customer's hash would then "
                         "be unrecognisable)")
    _print({"erasure_key": str(make_key(args.file)), "set": f"CROSS_SELL_ERASURE_KEY_FILE={args.file}"})
    return 0


def cmd_skew(args, clients: EnvClients) -> int:
    from .monitoring import skew

    checked = skew.check(clients, args.since, args.version, args.thresholds)
    print(checked.text())
    return 1 if checked.found is not None and checked.found.drifted and args.fail_on_skew else 0


def cmd_reproduce(args, clients: EnvClients) -> int:
    from .operations.reproduce import reproduce, summary

    found = reproduce(clients.registry, args.version)
    _print(found)
    print(f"{args.version}: {summary(found)}", file=sys.stderr)
    return 0 if found["identical"] else 1


def cmd_lineage(args, clients: EnvClients) -> int:
    from .governance.lineage import of_version

    _print(of_version(clients.registry, args.version, clients.settings.s3_prefix))
    return 0


def cmd_keygen(args, clients: EnvClients) -> int:
    from .governance.custody import keygen

    _print(keygen(args.directory, clients.settings.signing_conn_id, force=args.force))
    return 0


def _command(sub, name: str, handler, help: str, *arguments: tuple, signing: bool = False, model: bool = False):
    """A subcommand: `arguments` are (flags..., {add_argument's keywords}) tuples."""
    parser = sub.add_parser(name, help=help)
    for *flags, options in arguments:
        parser.add_argument(*flags, **options)
    if model:
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--model", default="champion", metavar="champion|VERSION",
                           help="a model of the registry: its signed manifest and verified ONNX file "
                                "(default: champion)")
        which.add_argument("--model-file", metavar="PATH",
                           help="a local joblib estimator instead: this UNPICKLES the file, which runs any code it "
                                "holds; only for a file you made yourself")
    if signing:
        parser.add_argument("--signing-key", metavar="FILE",
                            help=f"the model-signing private key that signs the pointer (default: ${SIGNING_KEY_ENV})")
    parser.set_defaults(handler=handler)
    return parser


def _add_load(sub) -> None:
    load = _command(sub, "load", cmd_load, "load customers into MongoDB (idempotent upsert on id)",
                    ("--seed", {"type": int, "default": 0}),
                    ("--first-id", {"type": _whole(1, 2**53), "default": 1,
                                    "help": "id of the first synthetic customer"}),
                    ("--mongo-uri", {"default": mongo_uri()}), ("--database", {}), ("--collection", {}),
                    ("--batch-size", {"type": _whole(1, 10**6), "default": 5_000}),
                    ("--quiet", {"action": "store_true", "help": "no progress bar"}))
    source = load.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="a Kaggle-format CSV (train.csv or the shared sample)")
    source.add_argument("--synthetic", type=_whole(1, 10**9), metavar="N", help="generate N synthetic customers")


def _add_commands(sub) -> None:
    """Every command but `load`, in the order `--help` lists them."""
    when = {"type": _day, "help": "only samples from this day on (YYYY-MM-DD)"}
    by = {"default": getpass.getuser()}
    _command(sub, "evaluate", cmd_evaluate, "metrics of a model on a labelled Kaggle-format CSV",
             ("--csv", {"required": True}), model=True)
    _command(sub, "score", cmd_score, "score a Kaggle-format CSV of customers into OUT (id, probability, label)",
             ("--csv", {"required": True}), ("--out", {"required": True}), model=True)
    _command(sub, "champion", cmd_champion, "show the champion, its history, or roll back",
             ("action", {"choices": ("show", "history", "rollback")}), ("version", {"nargs": "?"}),
             ("--reason", {"default": "manual rollback"}),
             ("--by", {"help": "rollback: who decided (recorded in the audit trail; required)"}),
             ("--force", {"action": "store_true", "help": "rollback: also to a version that never served, or the "
                                                          "current shadow"}), signing=True)
    _command(sub, "skew", cmd_skew, "compare sampled serving rows with the champion's training data",
             ("--since", when), ("--version", {"help": "compare with this model's training data instead"}),
             ("--thresholds", {"type": _limits, "default": None,
                               "help": 'per-feature limits as JSON, e.g. \'{"Age": 0.1}\''}),
             ("--fail-on-skew", {"action": "store_true", "help": "exit 1 when a feature crosses its limit"}))
    _command(sub, "load-outcomes", cmd_load_outcomes, "load outcomes (id, Response[, observed_at]) for monitoring",
             ("--csv", {"required": True}),
             ("--observed-at", {"help": "for rows without observed_at (ISO date or time; default: now)"}),
             ("--mongo-uri", {"default": mongo_uri()}), ("--database", {}))
    _command(sub, "shadow", cmd_shadow, "the challenger scored in shadow: set VERSION, clear, show, report",
             ("action", {"choices": ("set", "clear", "show", "report")}), ("version", {"nargs": "?"}),
             ("--reason", {"default": "named by hand"}), ("--since", when),
             ("--mongo-uri", {"default": os.environ.get("MONGO_URI"),
                              "help": "report: where outcomes and customers are, for both models' realized metrics"}),
             signing=True)
    _command(sub, "erase", cmd_erase, "erase customers everywhere (GDPR art. 17), with a signed receipt",
             ("--ids-file", {"help": "customer ids, one per line"}),
             ("--reason", {"help": "why (e.g. the ticket of the request)"}),
             ("--verify", {"action": "store_true", "help": "check every erasure receipt instead (deleted, overwritten, "
                           "unsigned, incomplete, or not matching the suppression list): exit 1 on a problem"}),
             ("--by", {**by, "help": "who asked for it (recorded; default: you)"}),
             ("--request", {"help": "the request's name in the receipt (default: the file's name)"}),
             ("--dry-run", {"action": "store_true", "help": "find and count everything, change nothing"}),
             ("--mongo-uri", {"default": mongo_uri()}), signing=True)
    _command(sub, "retention", cmd_retention, "the retention policy: rules (S3 lifecycle), plan, or apply",
             ("action", {"choices": ("rules", "plan", "apply")}), ("--by", {**by, "help": "apply: who (recorded)"}))
    _command(sub, "erasure-key", cmd_erasure_key, "make the secret key of the erased customers' hashes",
             ("file", {}), ("--force", {"action": "store_true"}))
    _command(sub, "reproduce", cmd_reproduce, "retrain VERSION from its recorded snapshot, seed and params, and say "
             "whether the ONNX file and metrics come out the same", ("version", {}))
    _command(sub, "lineage", cmd_lineage, "where VERSION came from (data, validation, params, approver) and where "
             "it went (champion periods, scoring runs, campaign lists)", ("version", {}))
    _command(sub, "keygen", cmd_keygen, "make a model-signing key pair (signing.key, signing.pub) and the workers' "
             "custody key (custody.key)", ("directory", {}),
             ("--force", {"action": "store_true", "help": "replace an existing pair"}))


COMMANDS = (_add_load, _add_commands)


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
    except (OSError, ValueError, ArithmeticError) as error:  # a file that is not there or not readable as asked
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
