"""Deployment files and the local stack used by the demo, the tests and developers."""

from pathlib import Path
from typing import Final

DAY1_PROFILE: Final = Path(__file__).parent / "profiles" / "trailblazer-4ww-day1.toml"
"""The standard with targets 6 and 27 (receipt counted as day 1), for services that read it so."""
