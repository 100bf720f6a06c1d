"""A stand-in for prom/statsd-exporter where there is no Docker: StatsD over UDP in, Prometheus text out.

Compose runs the official prom/statsd-exporter image with docker/statsd/mapping.yml; this reads the same
file and does the part of the exporter's job the project relies on, the way the exporter does it:

* a mapping's `match` is a glob whose `*` stands for one dot-separated component; the first mapping that
  matches names the metric (`name`, with `$1`.. from the components) and sets its `labels`, or drops it
  (`action: drop`);
* an unmatched name is exported as it came, with every character outside [a-zA-Z0-9_:] made `_`;
* counters (`|c`, with a sample rate `|@0.1` scaled back) add up, gauges (`|g`, `+`/`-` deltas) hold their
  last value, timers and histograms (`|ms`, `|h`) become summaries (`_count`, `_sum`, in seconds).

    python -m devstack.statsd_exporter --udp 9125 --http 9102 [--mapping docker/statsd/mapping.yml]

Nothing here is used in production. No package on this project's registries bundles the exporter itself.
"""

from __future__ import annotations

import argparse
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = ROOT / "docker" / "statsd" / "mapping.yml"
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


@dataclass
class Mapping:
    pattern: re.Pattern
    name: str
    labels: dict[str, str]
    drop: bool = False  # `action: drop`: the metric is not exported

    @classmethod
    def from_config(cls, entry: dict) -> "Mapping":
        glob = "\\.".join("([^.]+)" if part == "*" else re.escape(part) for part in entry["match"].split("."))
        return cls(re.compile(f"^{glob}$"), entry["name"], dict(entry.get("labels") or {}),
                   entry.get("action") == "drop")

    def apply(self, metric: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
        found = self.pattern.match(metric)
        if not found:
            return None

        def expand(text: str) -> str:
            return re.sub(r"\$(\d+)", lambda m: found.group(int(m.group(1))), text)

        return expand(self.name), tuple(sorted((k, expand(v)) for k, v in self.labels.items()))


@dataclass
class Store:
    mappings: list[Mapping]
    counters: dict = field(default_factory=dict)
    gauges: dict = field(default_factory=dict)
    summaries: dict = field(default_factory=dict)  # key -> [count, sum]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def key(self, metric: str):
        """(name, labels) of a StatsD metric, None when a mapping drops it."""
        for mapping in self.mappings:
            mapped = mapping.apply(metric)
            if mapped is not None:
                return None if mapping.drop else mapped
        return _INVALID.sub("_", metric), ()

    def add_line(self, line: str) -> None:
        """One StatsD line: `name:value|type[|@rate][|#tags]`; malformed lines are dropped, as the exporter does."""
        try:
            name, rest = line.split(":", 1)
            parts = rest.split("|")
            value, kind = parts[0], parts[1]
            rate = next((float(p[1:]) for p in parts[2:] if p.startswith("@")), 1.0)
        except (ValueError, IndexError):
            return
        key = self.key(name)
        if key is None:
            return
        with self.lock:
            try:
                if kind == "c":
                    self.counters[key] = self.counters.get(key, 0.0) + float(value) / rate
                elif kind == "g":
                    delta = value[0] in "+-"
                    self.gauges[key] = (self.gauges.get(key, 0.0) if delta else 0.0) + float(value)
                elif kind in ("ms", "h", "d"):
                    count, total = self.summaries.get(key, (0.0, 0.0))
                    seconds = float(value) / 1000 if kind == "ms" else float(value)
                    self.summaries[key] = (count + 1 / rate, total + seconds / rate)
            except ValueError:
                return

    def exposition(self) -> bytes:
        """The Prometheus text format, one family per metric name."""
        lines: list[str] = []

        def labels(pairs, extra=()) -> str:
            pairs = (*pairs, *extra)
            return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}" if pairs else ""

        with self.lock:
            for kind, values in (("counter", self.counters), ("gauge", self.gauges)):
                for name in sorted({n for n, _ in values}):
                    lines.append(f"# TYPE {name} {kind}")
                    lines += [f"{name}{labels(pairs)} {value!r}" for (n, pairs), value in values.items() if n == name]
            for name in sorted({n for n, _ in self.summaries}):
                lines.append(f"# TYPE {name} summary")
                for (n, pairs), (count, total) in self.summaries.items():
                    if n == name:
                        lines += [f"{name}_sum{labels(pairs)} {total!r}", f"{name}_count{labels(pairs)} {count!r}"]
        return ("\n".join(lines) + "\n").encode()


def load(path: Path = MAPPING) -> Store:
    import yaml

    return Store([Mapping.from_config(entry) for entry in yaml.safe_load(path.read_text())["mappings"]])


def serve(store: Store, udp_port: int, http_port: int, host: str = "127.0.0.1") -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind((host, udp_port))

    def receive() -> None:
        while True:
            packet, _ = receiver.recvfrom(65535)
            for line in packet.decode("utf-8", "replace").splitlines():
                store.add_line(line.strip())

    threading.Thread(target=receive, daemon=True, name="statsd").start()

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = store.exposition()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer((host, http_port), Metrics).serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--udp", type=int, required=True, help="StatsD port (UDP)")
    parser.add_argument("--http", type=int, required=True, help="/metrics port")
    parser.add_argument("--mapping", default=str(MAPPING))
    args = parser.parse_args()
    serve(load(Path(args.mapping)), args.udp, args.http)


if __name__ == "__main__":
    main()
