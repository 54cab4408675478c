"""Prefect flows, the `story` CLI and Ray fan-out."""
