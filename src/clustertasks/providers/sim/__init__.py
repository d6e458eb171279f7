"""The simulated ACK cloud: ``cloud.SimCloud``, its ``catalogue`` and its ``timing``."""
