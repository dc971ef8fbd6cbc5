"""Running the `hotline` command as an operator would: a subprocess with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clean_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment minus any HOTLINE_/TWILIO_ settings, plus `env`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_", "TWILIO_"))}
    environment["PYTHONPATH"] = str(ROOT)
    environment.update(env or {})
    return environment


def hotline(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        env=clean_environment(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
