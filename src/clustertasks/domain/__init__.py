"""Pure domain: records, states and their transition table, ids and wire formats. No I/O."""
