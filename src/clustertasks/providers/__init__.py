"""Providers: the clouds operations act on, behind one interface (``sim`` is the default)."""
