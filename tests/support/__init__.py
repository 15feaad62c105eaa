"""Test support code shared by the suites: real servers on loopback (git, OCI registry)."""
