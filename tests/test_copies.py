"""The family folders' copies of the shared modeling files (utils/fix_copies.py) are those files."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "utils" / "fix_copies.py"


def test_every_family_copy_is_its_original():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_a_stale_copy_is_found_and_rewritten(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import fix_copies

    monkeypatch.setattr(fix_copies, "MODELING", tmp_path)
    monkeypatch.setattr(fix_copies, "SHARED", {"shared.py": ["family"]})
    (tmp_path / "family").mkdir()
    (tmp_path / "shared.py").write_text("VALUE = 1\n")
    (tmp_path / "family" / "shared.py").write_text("VALUE = 0\n")
    assert fix_copies.stale_copies() == [tmp_path / "family" / "shared.py"]
    monkeypatch.setattr(sys, "argv", ["fix_copies.py"])
    fix_copies.main()
    assert fix_copies.stale_copies() == [] and "VALUE = 1" in (tmp_path / "family" / "shared.py").read_text()
