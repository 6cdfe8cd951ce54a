"""scripts/reproduce.py and the recipes of configs/recipes: every recipe is valid for its scripts, and tables run end
to end on the synthetic phantom (--smoke)."""

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reproduce, pretrain, finetune = script("reproduce"), script("pretrain"), script("finetune")
TABLES = sorted(path.name for path in (ROOT / "configs" / "recipes").iterdir() if path.is_dir())


def test_a_recipe_is_its_file_over_the_table_and_folder_defaults_and_shares_a_rows_pretraining(tmp_path):
    defaults = "finetune: {save_total_limit: 2, eval_strategy: epoch}\nevaluate: {split: test}\n"
    (tmp_path / "_defaults.yaml").write_text(defaults)
    table = tmp_path / "table"
    table.mkdir()
    (table / "_defaults.yaml").write_text("finetune: {save_total_limit: 1}\n")
    (table / "a.yaml").write_text("row: A\npretrain: {model_type: mae}\nfinetune: {eval_strategy: steps}\n")
    (table / "b.yaml").write_text("row: B\nsame_pretraining_as: a\nfinetune: {learning_rate: 0.1}\n")
    (table / "c.yaml").write_text("row: C\nbenchmark: {script: model_step}\n")
    a, b, c = reproduce.load_recipes("table", tmp_path)
    assert a["finetune"] == {"save_total_limit": 1, "eval_strategy": "steps"} and a["evaluate"] == {"split": "test"}
    assert b["pretrain"] == {"model_type": "mae"} and b["finetune"]["learning_rate"] == 0.1
    assert c == {"row": "C", "benchmark": {"script": "model_step"}, "name": "c"}  # no fine-tuning: no defaults
    (table / "b.yaml").write_text("row: B\nsame_pretraining_as: a\npretrain: {model_type: mae}\n")
    with pytest.raises(ValueError, match="b.yaml: same_pretraining_as takes the pretraining of another row"):
        reproduce.load_recipes("table", tmp_path)


@pytest.mark.parametrize("table", TABLES)
def test_every_recipe_parses_as_its_scripts_arguments(table):
    names = {"pretrained": "/out/pretrain", "imagenet_vit": "/models/vit", "imagenet_mae": "/models/mae"}
    recipes = reproduce.load_recipes(table)
    assert recipes and len({recipe["row"] for recipe in recipes}) == len(recipes)
    for recipe in recipes:
        assert recipe.get("reported") or recipe.get("seeds"), recipe["name"]  # the paper's numbers, or a study's
        if "benchmark" in recipe:
            continue
        if recipe.get("pretrain"):
            argv = reproduce.command_line(recipe["pretrain"], names) + ["--output_dir", "/out"]
            model_args, _, _ = pretrain.parse_arguments(argv)
            assert model_args.model_type in pretrain.METHODS
        argv = reproduce.command_line(recipe["finetune"], names) + ["--output_dir", "/out"]
        finetune.parse_arguments(argv)


def test_settings_and_placeholders():
    recipe = {"row": "r", "pretrain": {"model_config": "vit-base", "num_train_epochs": 500, "scales": [1, 2]},
              "finetune": {"model_name_or_path": "{pretrained}/backbone", "load_best_model_at_end": True}}  # fmt: skip
    changed = reproduce.apply_settings(recipe, ["pretrain.max_steps=7", "finetune.learning_rate=0.0001"], smoke=False)
    assert changed["pretrain"]["max_steps"] == 7 and changed["finetune"]["learning_rate"] == 1e-4
    assert recipe["pretrain"] == {"model_config": "vit-base", "num_train_epochs": 500, "scales": [1, 2]}  # untouched
    assert reproduce.command_line(changed["pretrain"], {}) == [
        "--model_config", "vit-base", "--num_train_epochs", "500", "--scales", "1", "2", "--max_steps", "7",
    ]  # fmt: skip
    assert reproduce.command_line(recipe["finetune"], {"pretrained": "/p"}) == [
        "--model_name_or_path", "/p/backbone", "--load_best_model_at_end", "true",
    ]  # fmt: skip
    smoke = reproduce.apply_settings(recipe, [], smoke=True)
    assert smoke["pretrain"]["model_config"] == "vit-tiny" and "num_train_epochs" not in smoke["pretrain"]
    with pytest.raises(ValueError, match="section.key=value"):
        reproduce.apply_settings(recipe, ["max_steps=3"], smoke=False)
    assert reproduce.data_dir("lesions-only", {"cbis-ddsm": "/c", "mias": "/m", "cmmd": "/d"}) == "cbis-ddsm=/c,cmmd=/d"


def test_table_iv_runs_end_to_end_on_the_phantom_and_a_rerun_does_not_repeat_it(tmp_path, monkeypatch):
    results = reproduce.main(["miram-table-4", "--smoke", "--output_dir", str(tmp_path)])
    assert set(results) == {"mae", "miram-standard"}
    for metrics in results.values():  # AUC and AP may be undefined on the phantom's few test masses
        assert "accuracy" in metrics and all(0 <= value <= 1 for value in metrics.values())
    assert (tmp_path / "miram-standard" / "pretrain" / "model.safetensors").exists()
    table = (tmp_path / "results.md").read_text()
    assert "| MIRAM-Standard | " in table and "roc_auc (paper / here)" in table

    def refuse(*args, **kwargs):
        raise AssertionError("a finished row ran again")

    monkeypatch.setattr(reproduce, "train_and_evaluate", refuse)
    assert reproduce.main(["miram-table-4", "--smoke", "--output_dir", str(tmp_path)]) == results


def test_joint_embedding_rows_finetune_their_exported_backbone_and_rows_without_weights_are_skipped(tmp_path):
    results = reproduce.main(["miram-table-3", "--smoke", "--rows", "mocov3", "--output_dir", str(tmp_path / "t3")])
    assert "roc_auc" in results["mocov3"]
    assert json.loads((tmp_path / "t3" / "mocov3" / "finetune" / "config.json").read_text())["model_type"] == "vit"
    results = reproduce.main(["miram-table-1", "--smoke", "--rows", "supervised-imagenet", "supervised-random",
                              "--output_dir", str(tmp_path / "t1")])  # fmt: skip
    assert results["supervised-imagenet"] == {"skipped": "needs --weights imagenet_vit=<path>"}
    assert "accuracy" in results["supervised-random"]
    with pytest.raises(ValueError, match="No recipes for table"):
        reproduce.main(["table-9"])


def test_rows_that_share_a_pretraining_run_it_once_and_mil_rows_classify_whole_images(tmp_path):
    rows = ["byol-mip-linear", "byol-mip-finetuned"]
    results = reproduce.main(["tiled-table-3", "--smoke", "--rows", *rows, "--output_dir", str(tmp_path)])
    assert all("roc_auc" in results[row] or "accuracy" in results[row] for row in rows)
    assert (tmp_path / "byol-mip-linear" / "pretrain" / "model.safetensors").exists()
    assert not (tmp_path / "byol-mip-finetuned" / "pretrain").exists()
    config = json.loads((tmp_path / "byol-mip-finetuned" / "finetune" / "config.json").read_text())
    assert (config["model_type"], config["pooling"], config["backbone_config"]["model_type"]) == (
        "mil",
        "gated_attention",
        "resnet",
    )


def test_a_cross_validated_row_reports_the_mean_and_standard_error_over_its_folds(tmp_path):
    results = reproduce.main(["tiled-table-5", "--smoke", "--rows", "supervised-gap", "--output_dir", str(tmp_path)])
    row = results["supervised-gap"]
    assert len(row["folds"]) == 5 and sorted(path.name for path in tmp_path.joinpath("supervised-gap").iterdir()) == [
        "fold-0", "fold-1", "fold-2", "fold-3", "fold-4", "results.json"
    ]  # fmt: skip
    accuracies = [fold["accuracy"] for fold in row["folds"]]
    assert row["accuracy"] == pytest.approx(sum(accuracies) / 5)
    assert row["accuracy_standard_error"] == pytest.approx(statistics.stdev(accuracies) / 5**0.5)


def test_the_phantom_study_runs_seeded_rows_and_compares_them_pairwise(tmp_path):
    rows = ["miram-linear-fine-detail", "mae-linear-fine-detail"]
    results = reproduce.main(["phantom-study", "--smoke", "--rows", *rows, "--output_dir", str(tmp_path)])
    for row in rows:  # --smoke keeps two of the three seeds: still an interval over seeds
        assert len(results[row]["seeds"]) == 2
        assert sorted(path.name for path in (tmp_path / row).iterdir()) == ["results.json", "seed-0", "seed-1"]
        assert results[row]["accuracy_ci_low"] <= results[row]["accuracy"] <= results[row]["accuracy_ci_high"]
    # the linear probe shares the pretraining of the MIRAM pathology row, which it did not run
    assert (tmp_path / "miram-linear-pathology" / "seed-1" / "pretrain" / "model.safetensors").exists()
    comparison = results["miram-linear-fine-detail"]["comparison"]
    assert comparison["compared_with"] == "mae-linear-fine-detail" and "accuracy_difference_ci_low" in comparison
    table = (tmp_path / "results.md").read_text()
    assert table.startswith("`python scripts/reproduce.py phantom-study --smoke")
    assert "| MIRAM [1, 2], linear probe, fine detail | 2 | " in table
    assert "| MIRAM [1, 2], linear probe, fine detail minus MAE, linear probe, fine detail | " in table
