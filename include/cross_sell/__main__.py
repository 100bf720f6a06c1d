"""Command line: `python -m cross_sell COMMAND ...`; `--help` lists the commands. Each is declared here
(its arguments and their checks) and done by its function in `cross_sell.commands`, with the clients
built from the environment (`cross_sell.clients.EnvClients`): parse, call the operation, print.

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

from . import commands
from .clients import SIGNING_KEY_ENV, EnvClients
from .errors import NothingToDo, NotRetryable
from .settings import mongo_uri


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
    load = _command(sub, "load", commands.load, "load customers into MongoDB (idempotent upsert on id)",
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
    _command(sub, "evaluate", commands.evaluate, "metrics of a model on a labelled Kaggle-format CSV",
             ("--csv", {"required": True}), model=True)
    _command(sub, "score", commands.score, "score a Kaggle-format CSV of customers into OUT (id, probability, label)",
             ("--csv", {"required": True}), ("--out", {"required": True}), model=True)
    _command(sub, "champion", commands.champion, "show the champion, its history, or roll back",
             ("action", {"choices": ("show", "history", "rollback")}), ("version", {"nargs": "?"}),
             ("--reason", {"default": "manual rollback"}),
             ("--by", {"help": "rollback: who decided (recorded in the audit trail; required)"}),
             ("--force", {"action": "store_true", "help": "rollback: also to a version that never served, or the "
                                                          "current shadow"}), signing=True)
    _command(sub, "skew", commands.skew, "compare sampled serving rows with the champion's training data",
             ("--since", when), ("--version", {"help": "compare with this model's training data instead"}),
             ("--thresholds", {"type": _limits, "default": None,
                               "help": 'per-feature limits as JSON, e.g. \'{"Age": 0.1}\''}),
             ("--fail-on-skew", {"action": "store_true", "help": "exit 1 when a feature crosses its limit"}))
    _command(sub, "load-outcomes", commands.load_outcomes, "load outcomes (id, Response[, observed_at]) for monitoring",
             ("--csv", {"required": True}),
             ("--observed-at", {"help": "for rows without observed_at (ISO date or time; default: now)"}),
             ("--mongo-uri", {"default": mongo_uri()}), ("--database", {}))
    _command(sub, "shadow", commands.shadow, "the challenger scored in shadow: set VERSION, clear, show, report",
             ("action", {"choices": ("set", "clear", "show", "report")}), ("version", {"nargs": "?"}),
             ("--reason", {"default": "named by hand"}), ("--since", when),
             ("--mongo-uri", {"default": os.environ.get("MONGO_URI"),
                              "help": "report: where outcomes and customers are, for both models' realized metrics"}),
             signing=True)
    _command(sub, "erase", commands.erase, "erase customers everywhere (GDPR art. 17), with a signed receipt",
             ("--ids-file", {"help": "customer ids, one per line"}),
             ("--reason", {"help": "why (e.g. the ticket of the request)"}),
             ("--verify", {"action": "store_true", "help": "check every erasure receipt instead (deleted, overwritten, "
                           "unsigned, incomplete, or not matching the suppression list): exit 1 on a problem"}),
             ("--by", {**by, "help": "who asked for it (recorded; default: you)"}),
             ("--request", {"help": "the request's name in the receipt (default: the file's name)"}),
             ("--dry-run", {"action": "store_true", "help": "find and count everything, change nothing"}),
             ("--mongo-uri", {"default": mongo_uri()}), signing=True)
    _command(sub, "retention", commands.retention, "the retention policy: rules (S3 lifecycle), plan, or apply",
             ("action", {"choices": ("rules", "plan", "apply")}), ("--by", {**by, "help": "apply: who (recorded)"}))
    _command(sub, "erasure-key", commands.erasure_key, "make the secret key of the erased customers' hashes",
             ("file", {}), ("--force", {"action": "store_true"}))
    _command(sub, "reproduce", commands.reproduce, "retrain VERSION from its recorded snapshot, seed and params, "
             "and say whether the ONNX file and metrics come out the same", ("version", {}))
    _command(sub, "lineage", commands.lineage, "where VERSION came from (data, validation, params, approver) and "
             "where it went (champion periods, scoring runs, campaign lists)", ("version", {}))
    _command(sub, "keygen", commands.keygen, "make a model-signing key pair (signing.key, signing.pub) and the "
             "workers' custody key (custody.key)", ("directory", {}),
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
            answer = args.handler(args, clients)
    except (NotRetryable, NothingToDo, ChampionChanged) as error:  # bad input, an untrusted model, no champion
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError, ArithmeticError) as error:  # a file that is not there or not readable as asked
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    answer = answer if isinstance(answer, commands.Answer) else commands.Answer(answer)
    print(answer.payload if isinstance(answer.payload, str) else json.dumps(answer.payload, indent=2, default=str))
    if answer.note:
        print(answer.note, file=sys.stderr)
    return answer.code


if __name__ == "__main__":
    sys.exit(main())
