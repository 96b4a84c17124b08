"""The notifier's decisions are pure: routing, the routing file, messages and schedules
import no I/O library."""

from pathlib import Path

from tests.unit.test_layers import IO_LIBRARIES, imported_modules

NOTIFY = Path(__file__).resolve().parents[3] / "mhst_tracker" / "notify"
PURE = ("config.py", "routing.py", "messages.py", "schedule.py")
IO = (*IO_LIBRARIES, "aiosmtplib", "httpx", "standardwebhooks", "uvicorn", "mhst_tracker.adapters")


def test_the_pure_modules_import_no_io() -> None:
    found = [
        f"{name}: {module}"
        for name in PURE
        for module in imported_modules(NOTIFY / name)
        if any(module == io or module.startswith(f"{io}.") for io in IO)
    ]
    assert found == []
