"""The disk-backed activation store: atomic sharded writer and memory-mapped reader."""

from .format import SCHEMA_VERSION, STORAGE_DTYPES
from .reader import ActivationStore, LayerView, verify_store
from .writer import ShardWriter, StoreWriter

__all__ = ["ActivationStore", "LayerView", "ShardWriter", "StoreWriter", "verify_store",
           "SCHEMA_VERSION", "STORAGE_DTYPES"]
