"""Operations: one module per task type, each an ordered list of idempotent stages."""
