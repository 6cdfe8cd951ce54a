"""Model cards rendered with huggingface_hub from the templates in `model_cards/`, with `model-index` results."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

# The card templates live in the repository's model_cards/ (the training scripts run from a checkout).
TEMPLATES = Path(__file__).resolve().parents[3] / "model_cards"
MIRAM_CITATION = (
    "MIRAM: Masked Image Reconstruction Across Multiple Scales for Breast Lesion Risk Prediction (cite the paper as "
    "published)."
)
MAE_CITATION = (
    'K. He, X. Chen, S. Xie, Y. Li, P. Dollár and R. Girshick, "Masked autoencoders are scalable vision learners", '
    "CVPR 2022."
)
# What to cite for a model of each pretraining method.
CITATIONS = {
    "miram": [MIRAM_CITATION, MAE_CITATION],
    "mae": [MAE_CITATION],
    "byol": ['J.-B. Grill et al., "Bootstrap your own latent: a new approach to self-supervised learning", '
             "NeurIPS 2020."],
    "dino": ['M. Caron et al., "Emerging properties in self-supervised vision transformers", ICCV 2021.'],
    "mocov3": ['X. Chen, S. Xie and K. He, "An empirical study of training self-supervised vision transformers", '
               "ICCV 2021."],
    "simclr": ['T. Chen, S. Kornblith, M. Norouzi and G. Hinton, "A simple framework for contrastive learning of '
               'visual representations", ICML 2020.'],
    "swav": ['M. Caron et al., "Unsupervised learning of visual features by contrasting cluster assignments", '
             "NeurIPS 2020."],
    "vae": ["The VAE-based self-supervised model for limited-sample mammogram classification (cite the paper as "
            "published)."],
}  # fmt: skip


def render_model_card(
    model_id: str,
    task: str,
    training_data: str,
    recipe: dict,
    results: list[dict] | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    template: str = "miram.md",
    architecture: str = "MIRAM: a ViT masked autoencoder with one decoder per reconstruction scale",
    license: str = "apache-2.0",
    auto_class: str = "AutoModel",
    usage: str = 'features = model(**processor("mammogram.dcm"), mask_ratio=0.0).last_hidden_state',
    pipeline_task: str | None = "image-feature-extraction",
    citations: list[str] | None = None,
    learned: list[tuple[str, str]] | None = None,
) -> ModelCard:
    """A card for `model_id`: what it is, the data and recipe actually used, `results` (dicts with dataset_name,
    dataset_type, dataset_split, metric_type, metric_value, task_type) as `model-index`, intended use and limits
    (research only), how to load it with and without the package (`auto_class`, then the `usage` line, and the
    `pipeline_task` its folder carries a pipeline for), what to cite (`citations`, by default MIRAM's and MAE's
    papers) and, for a pretrained model, what it learned (`learned`: (what, value) rows, e.g. its reconstruction
    loss against a trivial baseline and its probe against the random encoder's)."""
    template_path = TEMPLATES / template
    if not template_path.is_file():
        raise FileNotFoundError(f"No model card template at {template_path}: run from a miram_hf checkout.")
    eval_results = [
        EvalResult(
            task_type=result.get("task_type", "image-classification"),
            dataset_type=result["dataset_type"],
            dataset_name=result["dataset_name"],
            dataset_split=result.get("dataset_split"),
            metric_type=result["metric_type"],
            metric_value=result["metric_value"],
        )
        for result in results or []
    ]
    card_data = ModelCardData(
        model_name=model_id.split("/")[-1],
        library_name="transformers",
        pipeline_tag="image-classification" if task == "image-classification" else "image-feature-extraction",
        tags=["mammography", "self-supervised-learning", "miram", "medical-imaging", "research-only"],
        license=license,
        base_model=base_model,
        datasets=datasets,
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_id=model_id,
        model_name=model_id.split("/")[-1],
        model_description=f"`{model_id}` ({task}) was trained with miram_hf: {architecture}.",
        architecture=architecture,
        task=task,
        base_model=base_model,
        training_data=training_data,
        recipe=recipe,
        results=eval_results,
        auto_class=auto_class,
        usage=usage,
        pipeline_task=pipeline_task,
        citations=citations if citations is not None else CITATIONS["miram"],
        learned=learned or [],
    )
