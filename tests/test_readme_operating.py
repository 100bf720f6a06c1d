"""Issue #32: the README's "Operating it" commands, LITERALLY, from a fresh clone's root, on a machine whose
default ports (27017, 5000, 8000, 8080, 8793, 8794) are taken.

The commands are read from README.md's "Operating it" section: its first bash block is terminals 1 and 2
(split at `# terminal 2`), the next bash block and the python block trigger the training DAG (curl, then
Airflow's official client waiting for its run). They run as written, in `bash`, relative paths and all, in a
`git clone` of this repository. Its `.venv` reuses this interpreter's packages (a small venv whose site
path includes this one's, the console scripts linked) so that `make install` finds it installed instead of
installing a GB again. Every process is stopped as Ctrl-C would: SIGINT to the process group the test made.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
from test_devstack import DEFAULTS, occupied

from devstack.airflow_user import AirflowUser
from standalone_support import read_banner, sourced
from support import ROOT, scaled, skip_unless_available

pytestmark = pytest.mark.dagrun
DAG_ID = "cross_sell_training"


def operating_it() -> tuple[list[str], list[str], str, str]:
    """(terminal 1's lines, terminal 2's lines, the trigger's bash block, the client's python block)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Operating it\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(bash|python)\n(.*?)```", section, re.S)
    (kind_1, terminals), (kind_2, trigger), (kind_3, client) = blocks[:3]
    assert (kind_1, kind_2, kind_3) == ("bash", "bash", "python"), [kind for kind, _ in blocks]
    first, second = terminals.split("# terminal 2\n")
    return first.strip().splitlines(), second.strip().splitlines(), trigger, client


def reuse_this_venv(clone: Path) -> None:
    """`clone/.venv`: a venv without packages of its own that sees this interpreter's (a .pth line adds its
    site directories, their .pth files included), with its console scripts (airflow, nx-27017, gunicorn ...)
    linked, and marked installed after the clone's requirements so `make install` has nothing to do."""
    venv = clone / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_reuse_test_venv.pth").write_text("".join(f"import site; site.addsitedir({path!r})\n" for path in ours))
    for script in Path(sys.prefix, "bin").iterdir():
        target = venv / "bin" / script.name
        if not target.exists() and not script.name.startswith(("python", "activate", "pip")):
            target.symlink_to(script)
    later = time.time() + 10
    (venv / ".installed").touch()
    os.utime(venv / ".installed", (later, later))


def start(lines: list[str], cwd: Path, env: dict, log: Path | None = None) -> subprocess.Popen:
    """A terminal: `bash` running `lines` as written, in a process group of its own (Ctrl-C reaches it all)."""
    out = open(log, "wb") if log else subprocess.PIPE
    try:
        return subprocess.Popen(["bash", "-c", "set -e\n" + "\n".join(lines)], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT if log else None, text=log is None, start_new_session=True)
    finally:
        if log:
            out.close()


def ctrl_c(terminal: subprocess.Popen) -> None:
    if terminal.poll() is None:
        os.killpg(terminal.pid, signal.SIGINT)
        try:
            terminal.wait(timeout=scaled(60))
        except subprocess.TimeoutExpired:
            os.killpg(terminal.pid, signal.SIGKILL)
            terminal.wait()


def test_the_readme_operating_it_commands_run_as_written_with_the_default_ports_taken(tmp_path):
    skip_unless_available(None if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")
                          else "nginx is not installed (.ci/run installs it)")
    skip_unless_available(None if shutil.which("git") and shutil.which("make") and shutil.which("curl")
                          else "git, make and curl are needed")
    terminal_1, terminal_2, trigger, client = operating_it()
    assert terminal_1[0] == "make install" and "devstack services --serve" in terminal_1[-1]
    assert terminal_2[-1].startswith("airflow standalone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    reuse_this_venv(clone)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "CROSS_SELL_", "AWS_", "DEVSTACK_", "MLFLOW_"))
           and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    first = second = None
    with occupied(DEFAULTS):
        try:
            first = start(terminal_1, clone, env)
            banner = read_banner(first)
            for port in DEFAULTS:
                assert f"Port {port} (the default for" in banner, banner  # each replaced, and said so
            local = sourced(clone / ".local" / "services.env")
            url = local["AIRFLOW__API__BASE_URL"]
            api_port = int(local["AIRFLOW__API__PORT"])
            assert url == f"http://127.0.0.1:{api_port}" and api_port not in DEFAULTS
            assert local["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{url}/execution/"

            second = start(terminal_2, clone, env, log=tmp_path / "terminal-2.log")
            passwords = clone / ".local" / "airflow-ui" / "simple_auth_manager_passwords.json.generated"
            deadline = time.monotonic() + scaled(600)  # 100,000 customers loaded first, then Airflow starts
            while True:
                assert second.poll() is None, (tmp_path / "terminal-2.log").read_text()[-3000:]
                try:
                    admin = AirflowUser(url, "admin", json.loads(passwords.read_text())["admin"])
                    admin.token()
                    break
                except (OSError, ValueError, KeyError):
                    assert time.monotonic() < deadline, (tmp_path / "terminal-2.log").read_text()[-3000:]
                    time.sleep(2)
            admin.wait(lambda: admin.dag(DAG_ID), scaled(180), "the DAG to be parsed")

            (tmp_path / "client.py").write_text(client)
            terminal_3 = subprocess.run(["bash", "-c", f"set -e\n{trigger}\npython {tmp_path / 'client.py'}"],
                                        cwd=clone, env=env, capture_output=True, text=True, timeout=scaled(1500))
            assert terminal_3.returncode == 0, (terminal_3.stdout[-3000:], terminal_3.stderr[-3000:])
            answered, end = json.JSONDecoder().raw_decode(terminal_3.stdout.strip())  # curl's, then the client's
            by_curl = answered["dag_run_id"]
            by_client, state = terminal_3.stdout.strip()[end:].split()
            assert state == "success", (admin.states(DAG_ID, by_client), terminal_3.stdout[-2000:])
            assert admin.wait_for_run(DAG_ID, by_curl, scaled(60)).state.value == "success", \
                admin.states(DAG_ID, by_curl)
            assert admin.run(DAG_ID, by_curl).conf == {"min_roc_auc": 0.8}
            assert "extracted 100000 rows" in admin.log(DAG_ID, by_curl, "extract").replace(",", "")

            # One click from the UI: the evaluation report of the README's run opens as a page.
            report = admin.links(DAG_ID, by_curl, "evaluate")["Evaluation report"]
            with urllib.request.urlopen(report, timeout=scaled(30)) as page:
                assert page.headers.get_content_type() == "text/html" and b"Fairness" in page.read()

            # The failure alert's log link names the API's port in use (it said localhost:8080).
            failing = admin.trigger(DAG_ID, {"min_roc_auc": 0.8, "no_such_param": 1})
            assert admin.wait_for_run(DAG_ID, failing, scaled(300)).state.value == "failed"
            log = admin.log(DAG_ID, failing, "extract")
            assert "unknown param(s) ['no_such_param']" in log, log[-2000:]
            assert f"log: {url}/dags/{DAG_ID}/runs/" in log and "localhost:8080" not in log, log[-2000:]
        finally:
            for terminal in (second, first):
                if terminal is not None:
                    ctrl_c(terminal)
