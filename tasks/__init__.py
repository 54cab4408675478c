"""The work itself as plain typed functions and classes; no Prefect, no Ray."""
