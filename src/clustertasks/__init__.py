"""clustertasks: ACK-compatible durable tasks for cluster operations."""

__version__ = "0.1.0"
