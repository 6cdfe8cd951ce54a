from huggingface_hub import ModelCard

from miram_hf.training.methods import METHODS
from miram_hf.training.model_card import is_hub_model_id, render_model_card

RESULTS = [
    {"dataset_name": "CBIS-DDSM", "dataset_type": "cbis-ddsm", "dataset_split": "test", "metric_type": "roc_auc",
     "metric_value": 0.88},
    {"dataset_name": "CBIS-DDSM", "dataset_type": "cbis-ddsm", "dataset_split": "test",
     "metric_type": "average_precision", "metric_value": 0.68},
]  # fmt: skip


def test_card_has_model_index_recipe_and_use_limits(tmp_path):
    card = render_model_card(
        "org/miram-vitb",
        "image-classification",
        "CBIS-DDSM lesion crops, official train split",
        {"epochs": 100, "batch size": 32, "layer decay": 0.75},
        results=RESULTS,
        base_model="org/miram-vitb-pretrained",
        datasets=["cbis-ddsm"],
        architecture="MIRAM: a ViT masked autoencoder with one decoder per reconstruction scale",
        method="miram",
        citations=list(METHODS["miram"].citations),
    )
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert [(r.metric_type, r.metric_value, r.dataset_split) for r in loaded.data.eval_results] == [
        ("roc_auc", 0.88, "test"),
        ("average_precision", 0.68, "test"),
    ]
    assert loaded.data.base_model == "org/miram-vitb-pretrained" and loaded.data.library_name == "transformers"
    text = loaded.text
    assert "not a medical device" in text and "| layer decay | 0.75 |" in text
    assert 'AutoModel.from_pretrained("org/miram-vitb", trust_remote_code=True)' in text
    assert "import miram_hf" in text and "| CBIS-DDSM | test | roc_auc | 0.8800 |" in text


def test_card_without_results():
    card = render_model_card("org/byol-pretrained", "pretraining", "synthetic phantom", {"steps": 100},
                             architecture="BYOL", method="byol", citations=list(METHODS["byol"].citations))  # fmt: skip
    assert card.data.eval_results is None and "Not evaluated on a downstream task yet." in card.text
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert "byol" in card.data.tags and "miram" not in card.data.tags and "self-supervised-learning" in card.data.tags
    assert "Grill" in card.text and "MIRAM" not in card.text


def test_a_local_base_model_stays_out_of_the_metadata(tmp_path):
    local = tmp_path / "my-pretraining-run"
    local.mkdir()
    card = render_model_card("org/resnet-finetuned", "image-classification", "phantom", {}, base_model=str(local),
                             architecture="ResNet-50", method="resnet", citations=[])  # fmt: skip
    assert card.data.base_model is None and "`my-pretraining-run`" in card.text and str(tmp_path) not in card.text
    assert not is_hub_model_id("vit-base") and is_hub_model_id("org/miram-vitb")
