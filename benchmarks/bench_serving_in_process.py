"""CPU of one one-row POST /predict through the service's WSGI callable, in this process (no front, no
gunicorn, S3 in process with moto), beside the floor app's (benchmarks/ladder_apps.py: decode + ONNX Runtime
+ answer) and the service with its access line or its metrics switched off: where a one-row request's
CPU goes, without the noise of a loaded machine (issue #34; benchmarks/README.md).

    python benchmarks/bench_serving_in_process.py [--calls 20000] [--profile]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import logging.config
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "include"), str(ROOT / "tests"), str(ROOT / "benchmarks")]
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-metrics-"))  # as gunicorn
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

BUCKET, PREFIX = "bench-in-process", "vi"


def cpu_ms(call, calls: int) -> float:
    for _ in range(1_000):
        call()
    started = time.process_time()
    for _ in range(calls):
        call()
    return 1000 * (time.process_time() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true", help="also cProfile the service's calls")
    args = parser.parse_args()

    import boto3
    from moto import mock_aws

    from cross_sell.data import schema, synthetic
    from cross_sell.storage.registry import ModelRegistry
    from cross_sell.storage.signing import ManifestSigner, ManifestVerifier, generate_key_pair
    from serving_support import publish, train_model

    private, public = generate_key_pair(tempfile.mkdtemp(prefix="bench-keys-"))
    os.environ["CROSS_SELL_SIGNING_PUBLIC_KEY"] = str(public)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        registry = ModelRegistry(s3, BUCKET, PREFIX, ManifestVerifier.from_env())
        signer = ManifestSigner.from_file(private)
        publish(registry, "v1", train_model(1), signer)
        registry.set_champion("v1", None, "promote", signer, run_id="bench")

        from serving import metrics
        from serving.app import create_app
        from serving.config import ServingConfig
        from serving.logging_config import LOGCONFIG

        sink = open(os.devnull, "w")  # the access lines go somewhere, as gunicorn's stderr does
        logging.config.dictConfig({**LOGCONFIG, "handlers": {name: {**handler, "stream": sink}
                                                             for name, handler in LOGCONFIG["handlers"].items()}})
        app = create_app(ServingConfig(s3_bucket=BUCKET, s3_prefix=PREFIX, public_key_path=str(public),
                                       sample_rate=0.01), start_poller=False)
        record = synthetic.generate(1, seed=3)[list(schema.FEATURES)].to_dict("records")[0]
        body = json.dumps({"records": [{k: getattr(v, "item", lambda v=v: v)() for k, v in record.items()}]}).encode()

        def request(wsgi_app):
            def call():
                statuses: list[str] = []
                wsgi_app({"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "CONTENT_TYPE": "application/json",
                          "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                          "REMOTE_ADDR": "127.0.0.1"}, lambda status, headers: statuses.append(status))
                if not statuses[0].startswith("200"):
                    raise RuntimeError(statuses)
            return call

        import ladder_apps

        onnx = Path(tempfile.mkdtemp(prefix="bench-floor-")) / "floor.onnx"
        onnx.write_bytes(s3.get_object(Bucket=BUCKET, Key=registry.model_key("v1"))["Body"].read())
        os.environ.update(FLOOR_ONNX=str(onnx), FLOOR_THRESHOLD="0.3")
        figures = {"floor app (decode + ORT + answer)": cpu_ms(request(ladder_apps.floor), args.calls),
                   "the service": cpu_ms(request(app), args.calls)}
        access = logging.getLogger("serving.access")
        access.setLevel(logging.WARNING)
        figures["the service without its access line"] = cpu_ms(request(app), args.calls)
        access.setLevel(logging.INFO)
        saved = metrics.observe_request, metrics.observe_predictions
        metrics.observe_request = metrics.observe_predictions = lambda *a: None  # type: ignore[assignment]
        figures["the service without its metrics"] = cpu_ms(request(app), args.calls)
        metrics.observe_request, metrics.observe_predictions = saved
        print(f"CPU ms per one-row call, in process ({args.calls:,} calls each):")
        for name, ms in figures.items():
            print(f"  {name:40s} {ms:.4f}")
        if args.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            call = request(app)
            profile.enable()
            for _ in range(args.calls):
                call()
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
