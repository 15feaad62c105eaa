"""Fixtures for the registry tests: real ``docker-registry`` processes on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ on sys.path makes ``support`` importable without a tests package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
