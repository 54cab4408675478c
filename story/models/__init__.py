"""Torch modules and their loaders. Imports only torch, diffusers and transformers."""
