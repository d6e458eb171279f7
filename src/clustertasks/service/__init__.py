"""Use cases: submit, get, list, cancel, pause, resume. Never imports the engine."""
