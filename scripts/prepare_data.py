"""Build a collection's config and write it as sharded parquet that `datasets` can stream, for pretraining on data
larger than memory and for sharing on the Hub where the licence allows.

    python scripts/prepare_data.py --dataset cbis-ddsm --data_dir /data/CBIS-DDSM --config lesions --output_dir out/cbis
    python scripts/prepare_data.py --dataset synthetic --config lesions --output_dir out/synthetic --num_images 256

Then: `datasets.load_dataset("parquet", data_files={"train": "out/cbis/train-*.parquet"}, streaming=True)`.
The parquet files carry the features (16-bit images, class labels), so the streamed rows decode as the built ones.
"""

import argparse
import json
import logging
import math
from pathlib import Path

from tqdm.auto import tqdm

from miram_hf.data import BUILDERS, load_mammography, parse_dataset_options

logger = logging.getLogger("prepare_data")


def write_shards(dataset, output_dir: Path, split: str, rows_per_shard: int) -> list[Path]:
    """`split`-00000-of-0000N.parquet files of at most `rows_per_shard` rows each."""
    num_shards = max(1, math.ceil(len(dataset) / rows_per_shard))
    paths = []
    for index in tqdm(range(num_shards), desc=f"writing {split}", unit="shard"):
        path = output_dir / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
        dataset.shard(num_shards=num_shards, index=index, contiguous=True).to_parquet(str(path))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(BUILDERS))
    parser.add_argument("--config", default="lesions")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--rows_per_shard", type=int, default=1000)
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable file instead of skipping")
    parser.add_argument("--num_images", type=int, default=None, help="synthetic only: how many phantoms")
    parser.add_argument("--dataset_options", default=None, help="the config's fields, key=value,key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    config_kwargs = {"num_images": args.num_images} if args.num_images is not None else {}
    config_kwargs |= parse_dataset_options(args.dataset_options)
    splits = load_mammography(
        args.dataset,
        data_dir=args.data_dir,
        config_name=args.config,
        cache_dir=args.cache_dir,
        strict=args.strict,
        **config_kwargs,
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    written = {
        split: [str(p) for p in write_shards(rows, args.output_dir, split, args.rows_per_shard)]
        for split, rows in splits.items()
    }
    summary = {
        "dataset": args.dataset,
        "config": args.config,
        "rows": {s: len(r) for s, r in splits.items()},
        "files": written,
    }
    (args.output_dir / "prepare_data.json").write_text(json.dumps(summary, indent=2))
    logger.info("wrote %s", summary["rows"])
    return summary


if __name__ == "__main__":
    main()
