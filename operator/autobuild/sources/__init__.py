"""Git providers: resolving branch and tag heads (plain git via ``git ls-remote``, hosted APIs)."""
