"""The studio on one machine: a Prefect server, a process work pool and worker, a Ray head.

`story studio up | down | status | deploy` (flows/studio_cli.py) drive it; everything it runs
is recorded under `<workspace>/studio/` (state, pid files, logs, the Prefect database).
"""
