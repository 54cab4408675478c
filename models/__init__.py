"""Torch modules and their loaders. Imports only torch, diffusers and transformers."""

import os

# Models load from local folders only: no hub look-ups, quiet tokenizers. Callers may override.
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)
