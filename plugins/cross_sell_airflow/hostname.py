"""`[core] hostname_callable` for several Celery workers on one machine (devstack, `make stack`).

A task instance records the hostname of the worker that ran it. In compose each worker is a container
with a hostname of its own; on one machine CROSS_SELL_WORKER_HOSTNAME names each worker instead.
Unset, it is the machine's FQDN, as Airflow's default.
"""

from __future__ import annotations

import os
import socket


def get_hostname() -> str:
    return os.environ.get("CROSS_SELL_WORKER_HOSTNAME") or socket.getfqdn()
