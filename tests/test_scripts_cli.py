"""Every script starts as a user runs it, `python scripts/<name>.py`, with the script's folder first on sys.path."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[1] / "scripts"


@pytest.mark.parametrize("name", ["pretrain", "finetune", "evaluate", "prepare_data", "reproduce"])
def test_script_starts_from_the_command_line(name, tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), "--help"], capture_output=True, text=True, cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage:" in result.stdout
