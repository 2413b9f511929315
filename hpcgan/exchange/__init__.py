"""Exchange layer: compressed averages over ranks (compressor + error-feedback memory + communicator,
GRACE's split), and gradient buckets exchanged while backward goes on. Algorithms use it; it uses
:mod:`hpcgan.compress` (what the bytes are) and :mod:`hpcgan.comm` (how they move), which never
see each other."""
from .buckets import MIB, Bucket, BucketedExchange, plan_buckets
from .exchange import Exchange
from .wire import collect, from_bytes, to_bytes

__all__ = ["MIB", "Bucket", "BucketedExchange", "Exchange", "collect", "from_bytes", "plan_buckets", "to_bytes"]
