"""Local stand-ins for the production topology (tests, `make demo`, `make stack`, benchmarks).

Not part of the `cross-sell` distribution and not in any image: these start real servers (Airflow
processes, Debian's nginx, MongoDB-wire and S3 stand-ins) as plain processes on this machine.
"""
