"""The tamper-evident access log: a hash chain with a gapless sequence and signed checkpoints."""
