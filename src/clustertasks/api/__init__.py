"""The HTTP API: ACK's routes, parameters and documents, one thin function per route."""
