"""Test support code shared by the suites: a real smart-HTTP git server on loopback."""
