import importlib.util
import json
from pathlib import Path

from tiny_configs import tiny_miram_config

from miram_hf import MammographyImageProcessor, MiramForImageClassification

spec = importlib.util.spec_from_file_location("evaluate_script", Path(__file__).parents[1] / "scripts" / "evaluate.py")
evaluate_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evaluate_script)


def save_classifier(path: Path, num_labels: int, problem_type: str) -> Path:
    config = tiny_miram_config(num_labels=num_labels, problem_type=problem_type)
    MiramForImageClassification(config).save_pretrained(path)
    MammographyImageProcessor(size={"height": 32, "width": 32}, num_channels=3).save_pretrained(path)
    return path


def test_single_label_report(tmp_path):
    model = save_classifier(tmp_path / "model", 4, "single_label_classification")
    arguments = ["--model_path", str(model), "--output_dir", str(tmp_path / "eval"), "--cache_dir", str(tmp_path / "c")]
    results = evaluate_script.main([*arguments, "--num_images", "12", "--n_bootstrap", "20", "--split", "train"])
    assert results["task"] == "single_label" and results["examples"] > 0
    for name in ("accuracy", "roc_auc", "average_precision", "f1"):
        assert 0 <= results["metrics"][name] <= 1 and f"{name}_ci_low" in results["metrics"]
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["examples"] == results["examples"]
    for figure in ("roc_curves.png", "precision_recall_curves.png", "confusion_matrix.png"):
        assert (tmp_path / "eval" / figure).stat().st_size > 0


def test_multi_label_margins_use_masses_only(tmp_path):
    model = save_classifier(tmp_path / "model", 5, "multi_label_classification")
    arguments = ["--model_path", str(model), "--output_dir", str(tmp_path / "eval"), "--cache_dir", str(tmp_path / "c")]
    results = evaluate_script.main(
        [*arguments, "--num_images", "16", "--n_bootstrap", "10", "--split", "train", "--label_column",
         "label_mass_margins"]
    )  # fmt: skip
    assert results["task"] == "multi_label" and results["left_out_without_label"] > 0  # the calcifications
    assert "confusion_matrix.png" not in results["figures"]
    assert all(0 <= value <= 1 for value in results["metrics"].values())  # labels never seen are left out
