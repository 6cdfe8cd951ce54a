"""The modeling files several model families share, copied into each family's folder.

A family folder holds every file its model imports, imported with a single dot, so that `save_pretrained` copies them
next to the weights and a saved model loads with only transformers installed (`trust_remote_code=True`).
`src/miram_hf/modeling/backbone.py` and `joint_embedding.py` are written once, there; each family folder that needs
them holds a copy that this script writes. Edit the originals, then run it:

    python utils/fix_copies.py          # rewrite the copies
    python utils/fix_copies.py --check  # list the copies that differ from their original (the test suite runs this)
"""

import argparse
import sys
from pathlib import Path

MODELING = Path(__file__).resolve().parents[1] / "src" / "miram_hf" / "modeling"
SHARED = {
    "backbone.py": ["byol", "dino", "mil", "mocov3", "roi", "simclr", "swav"],
    "joint_embedding.py": ["byol", "dino", "mocov3", "simclr", "swav"],
}


def copy_text(name: str) -> str:
    header = f"# Copied from src/miram_hf/modeling/{name} by utils/fix_copies.py: edit that file, then run it.\n"
    return header + (MODELING / name).read_text()


def stale_copies() -> list[Path]:
    """The family copies that are missing or differ from their original."""
    copies = [MODELING / family / name for name, families in SHARED.items() for family in families]
    return [path for path in copies if not path.is_file() or path.read_text() != copy_text(path.name)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only list the stale copies; exit 1 if there are any")
    args = parser.parse_args()
    stale = stale_copies()
    if args.check:
        for path in stale:
            print(f"{path} differs from its original: run python utils/fix_copies.py")
        sys.exit(1 if stale else 0)
    for path in stale:
        path.unlink(missing_ok=True)  # a symbolic link is replaced, not written through
        path.write_text(copy_text(path.name))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
