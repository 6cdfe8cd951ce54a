"""The reader and the processor under mutation fuzzing (tests/fuzz_reading.py): 300 seeded mutations of a small
mammogram in each transfer syntax and in PNG / TIFF, each ending as processed pixels or a MammogramReadError, fast,
in bounded memory. Run in its own process so that the memory it reports is its own."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "fuzz_reading.py"


def test_no_mutated_file_crashes_stalls_or_exhausts_the_reader():
    result = subprocess.run([sys.executable, str(SCRIPT), "--mutations", "300", "--seed", "0"], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    summary = json.loads(result.stdout)
    assert result.returncode == 0 and summary["failures"] == [], summary["failures"][:10]
    formats = {"explicit-le", "implicit-le", "big-endian", "deflated", "rle", "jpeg2000", "jpeg-baseline", "jpeg-ls",
               "jpeg-extended", "png", "tiff"}  # fmt: skip
    assert set(summary["by_format"]) == formats and summary["mutations"] == len(formats) * 300
    assert set(summary["by_class"]) == {"processed", "read error"}
    assert all(sum(counts.values()) == 300 and counts.get("read error") for counts in summary["by_format"].values())
    assert summary["slowest"][0] < 5 and summary["peak_memory_mb"] < 1500, summary
