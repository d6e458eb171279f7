"""The web console: pages over the task and emulator services, under ``/console``."""
