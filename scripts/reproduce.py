"""Reproduce a results table of the source papers from its recipes, `configs/recipes/<table>/*.yaml` (one file per
row): each row's pretraining (scripts/pretrain.py), fine-tuning (scripts/finetune.py) and test-set evaluation
(scripts/evaluate.py), or its benchmark (bench/), then the table of what came out next to what the paper reported.

    python scripts/reproduce.py miram-table-3 --data_dir cbis-ddsm=/data/CBIS-DDSM,inbreast=/data/INbreast,...
    python scripts/reproduce.py miram-table-1 --weights imagenet_vit=/models/vit-base-patch16-224
    python scripts/reproduce.py miram-table-3 --set pretrain.per_device_train_batch_size=128 \\
        --set pretrain.gradient_accumulation_steps=8
    python scripts/reproduce.py miram-table-3 --smoke   # every row on the synthetic phantom, a few steps each

A recipe's `pretrain`, `finetune` and `evaluate` sections are those scripts' arguments. `{pretrained}` stands for the
row's pretraining output and `{name}` for a `--weights name=path` checkpoint (a row whose weights are not given is
skipped and says so). `same_pretraining_as: <recipe>` shares that row's pretraining (one pretrained model evaluated
two ways); it is run once and then only resumed. A row that finished is not run again: rerunning the command carries
on a table, and a pretraining run resumes from its last checkpoint.

`seeds: [0, 1, 2]` runs a row once per seed (pretraining and fine-tuning seeded alike) and reports each metric's mean
with a bootstrap 95% interval over seeds and test rows; `compare_with: <recipe>` adds the paired difference from that
row (the same seeds, the same test rows). Such a table has no paper numbers: `metrics` names what it shows.
"""

import sys
from pathlib import Path

# Run as `python scripts/<name>.py`, this folder comes first on sys.path, and scripts/evaluate.py would shadow the
# `evaluate` library that miram_hf.metrics builds on.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import importlib.util
import json
import logging
import string
import subprocess

import numpy as np
import yaml

from miram_hf.data import BUILDERS
from miram_hf.data.mixtures import IMAGE_LEVEL, LESION_LEVEL, MIXTURES
from miram_hf.metrics import Accuracy, AveragePrecision, RocAuc, bootstrap_over_seeds

logger = logging.getLogger("reproduce")
SCRIPTS = Path(__file__).resolve().parent
RECIPES = SCRIPTS.parent / "configs" / "recipes"
DEFAULTS = "_defaults.yaml"
# --smoke: the synthetic phantom, tiny inputs and a couple of steps, to check that a table's rows run end to end
SMOKE = {
    "pretrain": dict(dataset="synthetic", num_images=8, max_steps=2, per_device_train_batch_size=4, image_size=32,
                     num_local_crops=2, save_steps=1000, logging_steps=1, report_to="none", dataloader_num_workers=0,
                     gradient_accumulation_steps=1),
    "finetune": dict(dataset="synthetic", num_images=16, max_steps=2, per_device_train_batch_size=4, image_size=32,
                     eval_strategy="no", save_strategy="no", load_best_model_at_end=False, early_stopping_patience=0,
                     report_to="none", use_cpu=True, frozen_backbone_epochs=0),
    "evaluate": dict(dataset="synthetic", num_images=16, n_bootstrap=10),
}  # fmt: skip
# what a seeded table (of single-label tasks) reports, the first two unless a recipe names its `metrics`
METRICS = (Accuracy("single_label"), RocAuc("single_label"), AveragePrecision("single_label"))
DEFAULT_METRICS = ("accuracy", "roc_auc")
SMOKE_MODELS = {"vit-small": "vit-tiny", "vit-base": "vit-tiny", "resnet-50": "resnet-18"}
SMOKE_DROPPED = {"pretrain": ("num_train_epochs", "data_dir"), "finetune": ("num_train_epochs", "data_dir"),
                 "evaluate": ("data_dir",)}  # fmt: skip


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_recipes(table: str, recipes_dir: Path = RECIPES) -> list[dict]:
    """The rows of `table`, each complete: a row that fine-tunes starts from `_defaults.yaml` (the recipes folder's,
    then the table's, its own values winning), and a row with `same_pretraining_as` takes that row's `pretrain`."""
    folder = recipes_dir / table
    if not folder.is_dir():
        tables = sorted(path.name for path in recipes_dir.iterdir() if path.is_dir())
        raise ValueError(f"No recipes for table {table!r} in {recipes_dir}; tables: {tables}.")
    defaults = merged(*(read_yaml(path) for path in (recipes_dir / DEFAULTS, folder / DEFAULTS) if path.exists()))
    recipes = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name == DEFAULTS:
            continue
        recipe = read_yaml(path)
        if "row" not in recipe:
            raise ValueError(f"{path} is not a recipe: it needs at least a `row` name.")
        if "finetune" in recipe:
            recipe = merged(defaults, recipe)
        recipes[path.stem] = {**recipe, "name": path.stem}
    for name, recipe in recipes.items():
        shared = recipe.get("same_pretraining_as")
        if shared is None:
            continue
        if shared not in recipes or "pretrain" in recipe:
            raise ValueError(f"{folder / name}.yaml: same_pretraining_as takes the pretraining of another row of the "
                             f"table ({sorted(recipes)}) and has no pretrain section of its own.")  # fmt: skip
        recipe["pretrain"] = recipes[shared]["pretrain"]
    return list(recipes.values())


def read_yaml(path: Path) -> dict:
    content = yaml.safe_load(path.read_text())
    if not isinstance(content, dict):
        raise ValueError(f"{path} holds no mapping of sections.")
    return content


def merged(*layers: dict) -> dict:
    """The sections of `layers`, key by key, later layers winning."""
    result = {}
    for layer in layers:
        for key, value in layer.items():
            both_sections = isinstance(value, dict) and isinstance(result.get(key), dict)
            result[key] = {**result[key], **value} if both_sections else value
    return result


def parse_pairs(text: str | None, what: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in (text or "").split(",") if item]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"{what} is name=value,name=value; got {text!r}.")
    return dict(pairs)


def apply_settings(recipe: dict, settings: list[str], smoke: bool) -> dict:
    """The recipe with --smoke and `--set section.key=value` applied (values parsed as YAML: 8, 1e-4, true, [1, 2])."""
    recipe = {key: dict(value) if isinstance(value, dict) else value for key, value in recipe.items()}
    if smoke:
        for section, overrides in SMOKE.items():
            arguments = recipe.get(section)
            if not isinstance(arguments, dict):
                continue
            for key in SMOKE_DROPPED[section]:
                arguments.pop(key, None)
            for key in ("model_config", "model_name_or_path"):
                arguments[key] = SMOKE_MODELS.get(arguments.get(key), arguments.get(key))
            arguments.update(overrides)
        if recipe.get("seeds"):  # two seeds still give an interval over seeds
            recipe["seeds"] = recipe["seeds"][:2]
        finetune = recipe.get("finetune") or {}
        if finetune.get("mil_pooling"):  # whole images two tiles wide
            finetune.update(image_size=64, tile_size=32)
        if finetune.get("dataset_config") == "images":  # the phantom's whole-image label
            finetune["label_column"] = "label_malignant"
    for setting in settings:
        target, _, value = setting.partition("=")
        section, _, key = target.partition(".")
        if not key or not value:
            raise ValueError(f"--set takes section.key=value (e.g. pretrain.max_steps=100), got {setting!r}.")
        recipe.setdefault(section, {})[key] = yaml.safe_load(value)
    return recipe


def command_line(arguments: dict, names: dict[str, str]) -> list[str]:
    """A recipe section as command-line arguments, `{placeholders}` filled from `names`."""
    argv = []
    for key, value in arguments.items():
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        argv.append(f"--{key}")
        for item in values:
            item = str(item).lower() if isinstance(item, bool) else str(item)
            argv.append(string.Formatter().vformat(item, (), names))
        if not values:
            argv.pop()
    return argv


def placeholders(section: dict) -> set[str]:
    return {field for value in section.values() for _, field, _, _ in string.Formatter().parse(str(value)) if field}


def data_dir(dataset: str, folders: dict[str, str]) -> str | None:
    """What --data_dir a script needs for `dataset`: a collection's folder, or a mixture's name=folder list."""
    if dataset in MIXTURES and dataset not in BUILDERS:  # the mixture takes what it needs of every folder
        pretraining = [name for name in folders if name in LESION_LEVEL + IMAGE_LEVEL]
        return ",".join(f"{name}={folders[name]}" for name in pretraining) or None
    return folders.get(dataset)


def run_row(recipe: dict, output_dir: Path, folders: dict[str, str], weights: dict[str, str], pretrained: Path) -> dict:
    """Run one row, its pretraining in `pretrained` (its results are kept in output_dir/results.json, so a finished
    row is not run twice)."""
    done = output_dir / "results.json"
    if done.exists():
        return json.loads(done.read_text())
    names = {**weights, "pretrained": str(pretrained)}
    sections = [recipe.get(section) or {} for section in ("pretrain", "finetune", "evaluate")]
    missing = set().union(*(placeholders(section) for section in sections)) - set(names)
    if missing:
        return {"skipped": f"needs --weights {','.join(sorted(name + '=<path>' for name in missing))}"}
    if "benchmark" in recipe:
        command = [sys.executable, str(SCRIPTS.parent / "bench" / "model_step.py"), *recipe["benchmark"],
                   "--output", str(output_dir)]  # fmt: skip
        subprocess.run(command, check=True)
        results = {"benchmark": str(output_dir)}
    else:
        results = train_and_evaluate(recipe, output_dir, folders, names)
    output_dir.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(results, indent=1))
    return results


def run_seeded_row(recipe: dict, table_dir: Path, folders: dict[str, str], weights: dict[str, str]) -> dict:
    """Run a row once per seed of `recipe["seeds"]` (table_dir/<row>/seed-<k>, pretraining and fine-tuning seeded by
    k) and summarise it: each metric's mean over the seeds with a bootstrap interval over seeds and test rows."""
    done = table_dir / recipe["name"] / "results.json"
    if done.exists():
        return json.loads(done.read_text())
    runs = []
    for seed in recipe["seeds"]:
        seeded = {key: dict(value, seed=seed) if key in ("pretrain", "finetune") and value else value
                  for key, value in recipe.items()}  # fmt: skip
        folder = Path(f"seed-{seed}")
        pretrained = table_dir / recipe.get("same_pretraining_as", recipe["name"]) / folder / "pretrain"
        runs.append(run_row(seeded, table_dir / recipe["name"] / folder, folders, weights, pretrained))
    summary = {"seeds": runs}
    for metric in METRICS:
        if metric.name in recipe.get("metrics", DEFAULT_METRICS):
            summary |= bootstrap_over_seeds(metric, seed_predictions(table_dir, recipe))
    done.write_text(json.dumps(summary, indent=1))
    return summary


def seed_predictions(table_dir: Path, recipe: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """(scores, labels) on the test rows of each seed's model of a seeded row, as evaluate.py saved them."""
    runs = []
    for seed in recipe["seeds"]:
        evaluation = table_dir / recipe["name"] / f"seed-{seed}" / "evaluation"
        saved = json.loads((evaluation / "predictions.json").read_text())
        runs.append((np.array(saved["scores"]), np.array(saved["labels"])))
    return runs


def compare_rows(recipe: dict, reference: dict, table_dir: Path) -> dict:
    """The paired difference of a seeded row from `reference` (its `compare_with`), metric by metric, with a bootstrap
    interval over the seeds and the shared test rows."""
    if recipe["seeds"] != reference["seeds"]:
        raise ValueError(f"{recipe['name']} and {reference['name']} must run the same seeds to be compared.")
    runs, reference_runs = seed_predictions(table_dir, recipe), seed_predictions(table_dir, reference)
    difference = {"compared_with": reference["name"]}
    for metric in METRICS:
        if metric.name in recipe.get("metrics", DEFAULT_METRICS):
            difference |= bootstrap_over_seeds(metric, runs, reference_runs)
    return difference


def train_and_evaluate(recipe: dict, output_dir: Path, folders: dict[str, str], names: dict[str, str]) -> dict:
    if recipe.get("pretrain"):
        pretrain = dict(recipe["pretrain"])
        pretrain.setdefault("data_dir", data_dir(pretrain.get("dataset", "synthetic"), folders))
        argv = command_line(pretrain, names) + ["--output_dir", names["pretrained"], "--resume_from_checkpoint",
                                                "latest"]  # fmt: skip
        load_script("pretrain").main(argv)
    finetune = dict(recipe["finetune"])
    finetune.setdefault("data_dir", data_dir(finetune.get("dataset", "synthetic"), folders))
    evaluate = {"dataset": finetune.get("dataset"), "config": finetune.get("dataset_config"),
                "label_column": finetune.get("label_column"), "num_images": finetune.get("num_images"),
                "dataset_options": finetune.get("dataset_options"),
                **recipe.get("evaluate", {})}  # fmt: skip
    evaluate.setdefault("data_dir", data_dir(evaluate["dataset"], folders))
    if not recipe.get("folds"):
        return finetune_and_evaluate(finetune, evaluate, output_dir, names)
    # k-fold cross-validation: the mean over the folds, with its standard error, as the papers report it
    runs = []
    for fold in range(recipe["folds"]):
        split = {"num_folds": recipe["folds"], "fold": fold}
        runs.append(finetune_and_evaluate(finetune | split, evaluate | split, output_dir / f"fold-{fold}", names))
    summary = {}
    for metric in sorted(set.intersection(*(set(run) for run in runs))):
        values = np.array([run[metric] for run in runs])
        summary[metric] = float(values.mean())
        summary[f"{metric}_standard_error"] = float(values.std(ddof=1) / np.sqrt(len(values)))
    return summary | {"folds": runs}


def finetune_and_evaluate(finetune: dict, evaluate: dict, output_dir: Path, names: dict[str, str]) -> dict:
    load_script("finetune").main(command_line(finetune, names) + ["--output_dir", str(output_dir / "finetune")])
    # the same patients in each fold, or in a carved validation split, as fine-tuning had
    evaluate["seed"] = finetune.get("seed", 42)
    evaluate.setdefault("validation_fraction", finetune.get("validation_fraction"))
    argv = command_line(evaluate, names) + ["--model_path", str(output_dir / "finetune"), "--output_dir",
                                            str(output_dir / "evaluation")]  # fmt: skip
    return load_script("evaluate").main(argv)["metrics"]


def interval(result: dict, key: str) -> str:
    """`0.612 [0.551, 0.668]`: a value with its interval."""
    return f"{result[key]:.3f} [{result[key + '_ci_low']:.3f}, {result[key + '_ci_high']:.3f}]"


def seeded_table(recipes: list[dict], results: dict[str, dict]) -> str:
    """Markdown: each seeded row's metrics, mean over seeds [95% interval], then the paired comparisons."""
    metrics = [metric.name for metric in METRICS
               if any(metric.name in recipe.get("metrics", DEFAULT_METRICS) for recipe in recipes)]  # fmt: skip
    lines = ["| row | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for recipe in recipes:
        result = results[recipe["name"]]
        cells = [interval(result, metric) if metric in result else "-" for metric in metrics]
        lines.append(f"| {recipe['row']} | {len(recipe['seeds'])} | " + " | ".join(cells) + " |")
    compared = [recipe for recipe in recipes if "comparison" in results[recipe["name"]]]
    if compared:
        lines += ["", "| paired difference | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
        by_name = {recipe["name"]: recipe for recipe in recipes}
        for recipe in compared:
            comparison = results[recipe["name"]]["comparison"]
            cells = [interval(comparison, f"{metric}_difference") if f"{metric}_difference" in comparison else "-"
                     for metric in metrics]  # fmt: skip
            reference = by_name[comparison["compared_with"]]["row"]
            lines.append(f"| {recipe['row']} minus {reference} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cell(reported, result: dict, metric: str) -> str:
    """`paper / here`, with the standard error over the folds of a cross-validated row."""
    if metric not in result:
        return f"{reported} / -"
    error = result.get(f"{metric}_standard_error")
    return f"{reported} / {result[metric]:.3f}" + (f" (± {error:.3f})" if error is not None else "")


def results_table(recipes: list[dict], results: dict[str, dict]) -> str:
    """Markdown: each row's reported and reproduced value of every metric the paper reported."""
    metrics = sorted(
        {metric for recipe in recipes if "benchmark" not in recipe for metric in recipe.get("reported", {})}
    )
    lines = ["| row | " + " | ".join(f"{metric} (paper / here)" for metric in metrics) + " |",
             "|---|" + "---|" * len(metrics)]  # fmt: skip
    for recipe in recipes:
        result = results[recipe["name"]]
        if "skipped" in result or "benchmark" in result:
            cells = [result.get("skipped") or f"see {result['benchmark']}"] + [""] * (len(metrics) - 1)
        else:
            cells = [cell(recipe.get("reported", {}).get(metric, "-"), result, metric) for metric in metrics]
        lines.append(f"| {recipe['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="a folder of configs/recipes, e.g. miram-table-3")
    parser.add_argument("--data_dir", default=None, help="collection=folder,collection=folder")
    parser.add_argument("--weights", default=None, help="name=checkpoint for the recipes' {name} placeholders")
    parser.add_argument("--set", action="append", default=[], dest="settings", help="section.key=value")
    parser.add_argument("--rows", nargs="*", default=None, help="only these recipe files (names without .yaml)")
    parser.add_argument("--smoke", action="store_true", help="the synthetic phantom, a few steps per row")
    parser.add_argument("--recipes_dir", type=Path, default=RECIPES)
    parser.add_argument("--output_dir", type=Path, default=None, help="default outputs/reproduce/<table>")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    folders, weights = parse_pairs(args.data_dir, "--data_dir"), parse_pairs(args.weights, "--weights")
    unknown = set(folders) - set(BUILDERS)
    if unknown:
        raise ValueError(f"--data_dir names unknown collections {sorted(unknown)}; known: {sorted(BUILDERS)}.")
    recipes = [recipe for recipe in load_recipes(args.table, args.recipes_dir)
               if args.rows is None or recipe["name"] in args.rows]  # fmt: skip
    output_dir = args.output_dir or Path("outputs") / "reproduce" / (args.table + ("-smoke" if args.smoke else ""))
    results = {}
    for index, recipe in enumerate(recipes):
        logger.info("== %s: %s", args.table, recipe["row"])
        recipe = recipes[index] = apply_settings(recipe, args.settings, args.smoke)
        if recipe.get("seeds"):
            results[recipe["name"]] = run_seeded_row(recipe, output_dir, folders, weights)
        else:
            pretrained = output_dir / recipe.get("same_pretraining_as", recipe["name"]) / "pretrain"
            results[recipe["name"]] = run_row(recipe, output_dir / recipe["name"], folders, weights, pretrained)
    by_name = {recipe["name"]: recipe for recipe in recipes}
    for recipe in recipes:
        if recipe.get("compare_with") in by_name:
            results[recipe["name"]]["comparison"] = compare_rows(recipe, by_name[recipe["compare_with"]], output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = (
        seeded_table(recipes, results)
        if all(recipe.get("seeds") for recipe in recipes)
        else results_table(recipes, results)
    )
    command = "python scripts/reproduce.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (output_dir / "results.md").write_text(f"`{command}`\n\n{table}")
    (output_dir / "results.json").write_text(json.dumps(results, indent=1))
    logger.info("\n%s", table)
    return results


if __name__ == "__main__":
    main()
