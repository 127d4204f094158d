"""Where the engine keeps its state: the protocols, the in-memory backend, AWS."""
