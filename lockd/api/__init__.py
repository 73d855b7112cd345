"""The gRPC-facing layer: what the servicers share (lock_ops)."""
