"""Model families (one module each) and their registry (:mod:`flambient.nets.registry`)."""

from .registry import FlambientNet, ModelSpec, create_model, families, load_model, save_model

__all__ = ["FlambientNet", "ModelSpec", "create_model", "families", "load_model", "save_model"]
