"""No PHI leaves the project: DICOMs whose headers carry a patient's name, birth date, institution and accession
number go through a collection build, prepare_data.py, pretraining and fine-tuning, and no file that any of them
writes (arrow cache, parquet, weights, configs, cards, TensorBoard events, pictures, checkpoints) holds one of those
values. The patient_id column is the collection's published pseudonym (CBIS-DDSM's P_00001), which splits by patient
need."""

import importlib.util
from pathlib import Path

import datasets
from cbis_ddsm_factory import standard_cases, write_cbis_ddsm
from dicom_factory import PHI
from tiny_configs import tiny_miram_config

ROOT = Path(__file__).parents[1]
IDENTIFYING = [PHI[key] for key in ("PatientName", "PatientBirthDate", "InstitutionName", "AccessionNumber")]


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_identifying_dicom_attribute_reaches_any_written_file(tmp_path, monkeypatch, caplog):
    collection = write_cbis_ddsm(tmp_path / "cbis", standard_cases(), layout="nbia")
    assert PHI["PatientName"].encode() in next(collection.rglob("*.dcm")).read_bytes()  # the inputs do carry it
    written = tmp_path / "written"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(written / "hf-cache"))  # finetune.py's builds
    data = ["--data_dir", str(collection), "--cache_dir", str(written / "cache")]
    script("prepare_data").main(["--dataset", "cbis-ddsm", "--config", "lesions", "--output_dir",
                                 str(written / "parquet"), *data])  # fmt: skip
    tiny_miram_config(num_channels=1).save_pretrained(written / "config")
    script("pretrain").main(
        ["--model_config", str(written / "config"), "--dataset", "cbis-ddsm", *data, "--probe_dataset", "cbis-ddsm",
         "--output_dir", str(written / "pretrain"), "--max_steps", "2", "--per_device_train_batch_size", "2",
         "--save_steps", "1", "--report_to", "tensorboard"]
    )  # fmt: skip
    script("finetune").main(
        ["--model_name_or_path", str(written / "pretrain"), "--output_dir", str(written / "finetune"), "--dataset",
         "cbis-ddsm", "--data_dir", str(collection), "--max_steps", "2", "--per_device_train_batch_size", "1",
         "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
         "--early_stopping_patience", "0", "--report_to", "tensorboard", "--use_cpu", "true"]
    )  # fmt: skip
    files = [path for path in written.rglob("*") if path.is_file()]
    kinds = {path.suffix for path in files}
    assert {".arrow", ".parquet", ".safetensors", ".json", ".md", ".png"} <= kinds, kinds
    assert any(path.name.startswith("events.out.tfevents") for path in files)
    for path in files:
        content = path.read_bytes()
        for value in IDENTIFYING:
            assert value.encode() not in content, (value, path)
    assert not any(value in caplog.text for value in IDENTIFYING)
