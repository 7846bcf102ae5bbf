"""The disk-backed activation store: atomic sharded writer and memory-mapped reader."""

from .activation_cache import from_activation_cache
from .format import SCHEMA_VERSION, STORAGE_DTYPES
from .importing import from_arrays
from .reader import ActivationStore, LayerView, open_store
from .verify import verify_store
from .writer import ShardWriter, StoreWriter

__all__ = ["ActivationStore", "LayerView", "open_store", "ShardWriter", "StoreWriter", "verify_store",
           "SCHEMA_VERSION", "STORAGE_DTYPES", "from_arrays", "from_activation_cache"]
