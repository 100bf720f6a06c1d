"""Issue #32: `python -m devstack services --serve` as the README runs it (relative paths, default ports that may
be taken), and what it writes for `airflow standalone` and its tasks."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys

import pytest

from devstack import local_services
from standalone_support import read_banner, sourced, stop
from support import ROOT, skip_unless_available

DEFAULTS = (27017, 5000, 8000, 8080, 8793, 8794)


@contextlib.contextmanager
def occupied(ports):
    """Listeners on `ports` (one already taken by someone else counts as occupied too)."""
    sockets = []
    for port in ports:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            sockets.append(sock)
        except OSError:
            sock.close()
    try:
        yield
    finally:
        for sock in sockets:
            sock.close()


def _nginx():
    skip_unless_available(None if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")
                          else "nginx is not installed (.ci/run installs it)")


def test_the_front_runs_from_a_relative_folder_and_says_why_nginx_failed(tmp_path, monkeypatch):
    """The front's folder was used relative: nginx read its include from the wrong place and exited 1, and
    its stderr went to /dev/null, so the error said nothing."""
    _nginx()
    monkeypatch.chdir(tmp_path)
    front = local_services.start_front("127.0.0.1:9", workdir=".local/front")
    try:
        assert os.path.isabs(front.scratch[0]) and (tmp_path / ".local" / "front" / "serving.conf").exists()
    finally:
        front.stop()
    with pytest.raises(RuntimeError) as failed:  # a configuration nginx refuses: its own words in the error
        local_services.start_front("127.0.0.1:9", workdir="again", max_body_size="lots")
    assert "nginx exited with code 1" in str(failed.value), failed.value
    assert '"client_max_body_size" directive invalid value' in str(failed.value), failed.value


def _args(**given) -> argparse.Namespace:
    names = ("mongo", "s3", "serve", "airflow", "worker_log", "trigger_log")
    return argparse.Namespace(**{f"{name}_port": given.get(name) for name in names})


def test_ports_come_from_the_option_the_variable_or_a_free_one_when_the_default_is_taken():
    from devstack.__main__ import choose_ports

    wanted = ("mongo", "airflow", "worker_log")
    free = local_services.free_port()
    with occupied([27017, 8080, 8793]):
        ports, notes = choose_ports(_args(), wanted, environ={})
        assert 27017 not in ports.values() and 8080 not in ports.values() and len(set(ports.values())) == 3
        assert any("Port 8080" in note and str(ports["airflow"]) in note and "--airflow-port" in note
                   for note in notes), notes
        ports, notes = choose_ports(_args(airflow=free), ("airflow",), environ={"DEVSTACK_AIRFLOW_PORT": "1"})
        assert ports == {"airflow": free} and notes == []  # the option before the variable
        ports, _ = choose_ports(_args(), ("airflow",), environ={"DEVSTACK_AIRFLOW_PORT": str(free)})
        assert ports == {"airflow": free}
        with pytest.raises(SystemExit, match=r"port 8080 for Airflow's UI and REST API \(--airflow-port\) is taken"):
            choose_ports(_args(airflow=8080), ("airflow",), environ={})
        with pytest.raises(SystemExit, match="DEVSTACK_MONGO_PORT"):
            choose_ports(_args(), ("mongo",), environ={"DEVSTACK_MONGO_PORT": "27017"})


def test_services_env_carries_every_port_airflow_and_its_tasks_need(tmp_path):
    """With the API on another port every task failed with httpx.ConnectError (the execution API URL still
    named :8080) and the failure alert's log link named localhost:8080."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CROSS_SELL_", "AWS_", "DEVSTACK_"))}
    clean["PYTHONPATH"] = str(ROOT)
    with occupied(DEFAULTS):
        terminal = subprocess.Popen([sys.executable, "-m", "devstack", "services", "--in-memory"], cwd=tmp_path,
                                    env=clean, stdout=subprocess.PIPE, text=True)
        try:
            banner = read_banner(terminal)
        finally:
            stop(terminal)
    env = sourced(tmp_path / ".local" / "services.env")
    api = int(env["AIRFLOW__API__PORT"])
    assert api != 8080 and f"Port 8080 (the default for Airflow's UI and REST API) is taken: using {api}" in banner
    assert env["AIRFLOW__API__BASE_URL"] == f"http://127.0.0.1:{api}"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://127.0.0.1:{api}/execution/"
    logs = {int(env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]), int(env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"])}
    assert not logs & {8793, 8794} and len(logs) == 2
    assert env["AIRFLOW_HOME"] == str(tmp_path / ".local" / "airflow-ui")  # every path absolute
    assert os.path.isabs(env["CROSS_SELL_SIGNING_PUBLIC_KEY"]) and "27017" not in env["MONGO_URI"]
    assert f"UI and REST API on http://127.0.0.1:{api}" in banner and f"source {tmp_path}/.local/services.env" in banner
