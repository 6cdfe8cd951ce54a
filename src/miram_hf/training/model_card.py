"""Model cards rendered with huggingface_hub from the templates in `model_cards/` (shipped with the package), with
`model-index` results."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import validate_repo_id

TEMPLATES = Path(__file__).resolve().parent / "model_cards"


def is_hub_model_id(name: str | None) -> bool:
    """Whether `name` reads as a Hub model id (`org/name`) rather than a local folder or a preset name."""
    if not name or "/" not in name or Path(name).exists() or name.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(name)
    except ValueError:
        return False
    return True


def render_model_card(
    model_id: str,
    task: str,
    training_data: str,
    recipe: dict,
    *,
    architecture: str,
    method: str,
    citations: list[str],
    results: list[dict] | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    template: str = "miram.md",
    license: str = "apache-2.0",
    auto_class: str = "AutoModel",
    usage: str = 'features = model(**processor("mammogram.dcm"), mask_ratio=0.0).last_hidden_state',
    pipeline_task: str | None = "image-feature-extraction",
    learned: list[tuple[str, str]] | None = None,
) -> ModelCard:
    """A card for `model_id`: what it is (`architecture`, tagged with its `method`), the data (`datasets`: Hub ids
    where the data has one, the collection's name otherwise) and recipe actually used, `results` (dicts with
    dataset_name, dataset_type, dataset_split, metric_type, metric_value, task_type) as `model-index`, intended use
    and limits (research only), how to load it with and without the package (`auto_class`, then the `usage` line,
    and the `pipeline_task` its folder carries a pipeline for), what to cite (`citations`) and, for a pretrained
    model, what it learned (`learned`: (what, value) rows, e.g. its reconstruction loss against a trivial baseline and
    its probe against the random encoder's). `base_model` goes into the metadata only when it is a Hub id; a local
    folder is named by its last part in the text."""
    template_path = TEMPLATES / template
    if not template_path.is_file():
        raise FileNotFoundError(f"No model card template {template!r} in {TEMPLATES}.")
    started_from = base_model if base_model is None or is_hub_model_id(base_model) else Path(base_model).name
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
        tags=["mammography", "medical-imaging", "research-only", method]
        + (["self-supervised-learning"] if task == "pretraining" else []),
        license=license,
        base_model=base_model if is_hub_model_id(base_model) else None,
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
        base_model=started_from,
        training_data=training_data,
        recipe=recipe,
        results=eval_results,
        auto_class=auto_class,
        usage=usage,
        pipeline_task=pipeline_task,
        citations=citations,
        learned=learned or [],
    )
