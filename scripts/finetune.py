"""Fine-tune a pretrained checkpoint (MIRAM, a transformers ViT/ViTMAE/ResNet encoder, or the backbone a
joint-embedding method exported) on a collection's lesion or image task with `Trainer`: single-label
(`label_pathology`) or multi-label (`label_mass_margins`, masses only), class weights against imbalance, layer-wise lr
decay, drop path, mammogram augmentations on the fly, the best checkpoint on the validation split, early stopping, a
model card, and `--push_to_hub`. A collection without a validation split (CBIS-DDSM, CSAW-M, VinDr-Mammo) gets one
carved from its training patients (`--validation_fraction`, stratified, seeded by `--seed`, recorded in
data_splits.json and the card): the test split never chooses a checkpoint; only scripts/evaluate.py reads it. With
`--mil_pooling`, the encoder classifies whole images as bags of tiles (`MilForImageClassification`);
`--frozen_backbone_epochs` first trains the head alone (the tiled-patch paper's two stages).

    python scripts/finetune.py --model_name_or_path outputs/pretrain --dataset synthetic --output_dir out/ft
    python scripts/finetune.py --model_name_or_path outputs/pretrain-byol/backbone --mil_pooling gated_attention \
        --tile_size 96 --image_size 448 --frozen_backbone_epochs 5 --output_dir out/mil
"""

import sys
from pathlib import Path

# Run as `python scripts/<name>.py`, this folder comes first on sys.path, and scripts/evaluate.py would shadow the
# `evaluate` library that miram_hf.metrics builds on.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import dataclasses
import json
import logging
import tempfile
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import (
    EarlyStoppingCallback,
    HfArgumentParser,
    PretrainedConfig,
    Trainer,
    set_seed,
)

import miram_hf  # noqa: F401  (registers the models and the processor)
from miram_hf import add_remote_pipelines
from miram_hf.data import finetuning_splits, load_mammography, parse_dataset_options
from miram_hf.metrics import classification_metrics
from miram_hf.processing.augmentations import Compose, Contrast, Gamma, RandomFlip
from miram_hf.training import parameter_groups
from miram_hf.training.arguments import FinetuningArguments
from miram_hf.training.checkpointing import run_lock
from miram_hf.training.classification import (
    carries_label,
    class_weights,
    classification_inputs,
    classification_processor,
    collate_classification,
    image_classifier,
    label_targets,
    label_task,
    with_lora,
)
from miram_hf.training.divergence import StopOnNonFiniteGradients, TrainingDivergedError, finite_everywhere
from miram_hf.training.hub import push_folder_to_hub
from miram_hf.training.methods import citations_for
from miram_hf.training.model_card import render_model_card

logger = logging.getLogger("finetune")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={"help": "a pretrained checkpoint folder or Hub id, or a preset (vit-base, resnet-50, ...) to train "
                  "from random weights (the papers' supervised baselines)"}
    )  # fmt: skip
    image_size: int | None = field(default=None, metadata={"help": "defaults to the model's image_size"})
    drop_path_rate: float = field(default=0.1)
    mil_pooling: str | None = field(
        default=None, metadata={"help": "classify bags of tiles: gap, gated_attention or self_attention"}
    )
    tile_size: int = field(default=224, metadata={"help": "MIL: tile side (the tiled-patch paper: 96 for BYOL)"})
    roi_pooling: str | None = field(
        default=None,
        metadata={"help": "classify regions with RoI attention (a DINOv2 checkpoint): anchor, attention, mean or cls"},
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA adapters of this rank on the encoder (PEFT); 0: off"})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA's scale numerator (the update is alpha / r)"})
    lora_dropout: float = field(default=0.0)
    lora_target_modules: str | None = field(
        default=None, metadata={"help": "comma-separated layer names to adapt (default: the attention's q and v)"}
    )


@dataclass
class DataArguments:
    dataset: str = field(default="synthetic")
    data_dir: str | None = field(default=None)
    dataset_config: str = field(default="lesions")
    label_column: str = field(default="label_pathology", metadata={"help": "or label_mass_margins (multi-label)"})
    num_images: int | None = field(default=None, metadata={"help": "synthetic only"})
    dataset_options: str | None = field(default=None, metadata={"help": "the config's fields, key=value,key=value"})
    validation_fraction: float = field(
        default=0.1,
        metadata={"help": "for a collection without a validation split: the share of training patients carved into one "
                  "(stratified, seeded by --seed); the test split never chooses a checkpoint"},
    )  # fmt: skip
    num_folds: int | None = field(default=None, metadata={"help": "k-fold cross-validation over the patients"})
    fold: int = field(default=0, metadata={"help": "with num_folds: the fold to test on (the next one validates)"})
    view: str | None = field(default=None, metadata={"help": "only the images of this view (CC or MLO)"})


def parse_arguments(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, FinetuningArguments]:
    """The three groups of arguments, with the checks that span them made before any data or model is loaded."""
    parser = HfArgumentParser((ModelArguments, DataArguments, FinetuningArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if model_args.lora_r and (training_args.linear_evaluation or training_args.frozen_backbone_epochs):
        raise ValueError("--lora_r adapts the encoder: drop --linear_evaluation and --frozen_backbone_epochs.")
    return model_args, data_args, training_args


class WeightedTrainer(Trainer):
    """Trainer with class-weighted losses (inverse frequency), MAE's layer-wise lr decay groups, full training
    batches, and a stop at the first NaN or infinite loss or gradients."""

    def __init__(self, *args, class_weights=None, layer_decay=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights, self.layer_decay = class_weights, layer_decay
        # compute_loss returns a batch mean and passes no num_items_in_batch: Trainer must average it over the
        # accumulation steps, which it skips for a model whose forward takes **kwargs
        self.model_accepts_loss_kwargs = False
        self.add_callback(StopOnNonFiniteGradients(self.accelerator))

    def get_train_dataloader(self):
        # the incomplete last batch of each epoch is dropped in training (as MAE's fine-tuning does): a batch of one
        # image breaks BatchNorm (ResNet); evaluation keeps every image
        drop_last, self.args.dataloader_drop_last = self.args.dataloader_drop_last, True
        try:
            return super().get_train_dataloader()
        finally:
            self.args.dataloader_drop_last = drop_last

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            groups = parameter_groups(
                self.model, self.args.learning_rate, self.args.weight_decay, layer_decay=self.layer_decay
            )
            optimizer_class, options = Trainer.get_optimizer_cls_and_kwargs(self.args, self.model)  # --optim
            self.optimizer = optimizer_class(groups, **options)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        logits, labels = outputs.logits, inputs["labels"]
        weights = None if self.class_weights is None else self.class_weights.to(logits.device)
        config = self.model.config  # the model may come wrapped (DDP)
        if config.problem_type == "multi_label_classification":
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights)
        else:
            loss = torch.nn.functional.cross_entropy(logits, labels, weight=weights)
        if getattr(outputs, "contrastive_loss", None) is not None:  # RoI attention's term beside the classification
            loss = loss + config.contrastive_weight * outputs.contrastive_loss
        if not finite_everywhere(self.accelerator, loss):  # before any process's update: all stop together
            raise TrainingDivergedError(
                f"Step {self.state.global_step + 1}: the loss is NaN or infinite, fine-tuning diverged. The "
                f"checkpoints in {self.args.output_dir} are from before it; rerun with a lower --learning_rate."
            )
        return (loss, outputs) if return_outputs else loss


def classifier_architecture(config: PretrainedConfig) -> str:
    """What the card says the classifier is."""
    backbone = getattr(config, "backbone_config", None)
    described = {
        "miram": "a MIRAM encoder (ViT) with a linear head",
        "mil": f"tiles through a {backbone.model_type if backbone else ''} backbone, {getattr(config, 'pooling', '')} "
        "multiple-instance pooling, a linear head",
        "roi_attention": f"region tokens of a {backbone.model_type if backbone else ''} backbone, attention pooling "
        "around the breast's anchor, a linear head",
        "mammo_vae": "the VAE-SSL encoder's latent read by a 228-parameter convolutional classifier",
    }
    return described.get(config.model_type, f"transformers' {type(config).__name__.removesuffix('Config')} classifier")


def write_card(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: FinetuningArguments,
    model_config: PretrainedConfig,
    evaluation: dict,
    data_splits: dict,
    layer_decay: float | None,
    has_drop_path: bool,
) -> None:
    """README.md next to the weights: the data and where its validation split comes from, the recipe, the validation
    metrics as model-index and how to load it."""
    results = [
        {"dataset_name": data_args.dataset, "dataset_type": data_args.dataset, "dataset_split": "validation",
         "metric_type": key.removeprefix("eval_"), "metric_value": float(value)}
        for key, value in evaluation.items()
        if key.removeprefix("eval_") in ("accuracy", "roc_auc", "average_precision", "f1")
    ]  # fmt: skip
    # MIL and RoI classifiers take bags of tiles or regions (classification_inputs), the others one image
    one_image_input = model_config.model_type not in ("mil", "roi_attention")
    usage = (
        'probabilities = model(**processor("mammogram.dcm")).logits.softmax(-1)'
        if one_image_input
        else "# inputs: miram_hf.training.classification.classification_inputs(model.config, processor, images)"
    )
    card = render_model_card(
        training_args.hub_model_id or Path(training_args.output_dir).name,
        "image-classification",
        f"{data_args.dataset} `{data_args.dataset_config}`, column `{data_args.label_column}`: "
        f"{data_splits['rows']['train']} training rows; {data_splits['rows']['validation']} validation rows "
        f"({data_splits['validation']}), on which the checkpoint was chosen and the results below are measured. "
        "The test split was not used.",
        {"epochs": training_args.num_train_epochs, "max steps": training_args.max_steps,
         "learning rate": training_args.learning_rate, "layer decay": layer_decay,
         "drop path": model_args.drop_path_rate if has_drop_path else None,
         "class weighting": training_args.class_weighting, "MIL pooling": model_args.mil_pooling,
         "RoI pooling": model_args.roi_pooling, "linear evaluation": training_args.linear_evaluation,
         "frozen-backbone epochs": training_args.frozen_backbone_epochs},
        results=results,
        base_model=model_args.model_name_or_path,
        datasets=[data_args.dataset],
        architecture=classifier_architecture(model_config),
        method=model_config.model_type,
        citations=citations_for(model_config.model_type),
        auto_class="AutoModelForImageClassification",
        usage=usage,
        pipeline_task="image-classification" if one_image_input else None,
    )  # fmt: skip
    card.save(Path(training_args.output_dir) / "README.md")


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_arguments(argv)
    with run_lock(training_args.output_dir, holder=training_args.process_index == 0):  # one run per output_dir
        return finetune(model_args, data_args, training_args)


def finetune(model_args: ModelArguments, data_args: DataArguments, training_args: FinetuningArguments) -> dict:
    """The fine-tuning the arguments describe, from the data to the model folder and its card; returns its
    results."""
    set_seed(training_args.seed)  # before the model: its fresh head is drawn from the seeded state
    # pushed once at the end, card included (Trainer's own push would replace our card with its own)
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    extra = {"num_images": data_args.num_images} if data_args.num_images is not None else {}
    extra |= parse_dataset_options(data_args.dataset_options)
    with training_args.main_process_first(desc="building the dataset"):  # one process builds the cache
        splits = load_mammography(data_args.dataset, data_args.data_dir, data_args.dataset_config, **extra)
    splits, validation_source = finetuning_splits(
        splits, data_args.label_column, data_args.num_folds, data_args.fold, data_args.validation_fraction,
        training_args.seed,
    )  # fmt: skip
    multi_label, names = label_task(splits["train"].features[data_args.label_column])

    def has_label(row) -> bool:  # the rows of the task, in the chosen view
        in_view = not data_args.view or row["view"] == data_args.view
        return in_view and carries_label(row, data_args.label_column, multi_label)

    splits = {name: split.filter(has_label) for name, split in splits.items()}
    labelling = dict(
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
    )
    model = image_classifier(
        model_args.model_name_or_path, labelling, model_args.drop_path_rate, model_args.image_size,
        model_args.mil_pooling, model_args.tile_size, model_args.roi_pooling,
    )  # fmt: skip
    has_drop_path = hasattr(model.config, "drop_path_rate")
    # whole mammograms are cropped to the breast, their labels and frame lines cleared; crops and tiles are breast
    whole_mammograms = not {"crop_box", "tile_box"} & set(splits["train"].column_names)
    processor = classification_processor(model_args.model_name_or_path, model.config, model_args.image_size,
                                         whole_mammograms)  # fmt: skip
    augment = Compose([RandomFlip(0.5, 0.5), Gamma(p=0.8), Contrast(p=0.8)])

    def transform(rows, train: bool):
        images = [np.array(image) for image in rows["image"]]
        inputs = classification_inputs(model.config, processor, images, augment if train else None)
        labels = label_targets(rows[data_args.label_column], len(names), multi_label)
        return {key: [row[key] for row in inputs] for key in inputs[0]} | {"labels": labels}

    weights = None
    if training_args.class_weighting:
        train_targets = np.array(label_targets(splits["train"][data_args.label_column], len(names), multi_label))
        weights = class_weights(train_targets, len(names), multi_label)

    train, validation = splits["train"], splits["validation"]  # the test split is evaluate.py's alone
    data_splits = {
        "validation": validation_source,
        "rows": {"train": len(train), "validation": len(validation)},
        "validation_patients": sorted(set(validation["patient_id"])),
    }
    train.set_transform(lambda rows: transform(rows, True))
    validation.set_transform(lambda rows: transform(rows, False))

    task = "multi_label" if multi_label else "single_label"

    def compute_metrics(prediction) -> dict:
        scores = torch.tensor(prediction.predictions)
        scores = scores.sigmoid() if multi_label else scores.softmax(-1)
        references = prediction.label_ids.astype(int).tolist()
        results, undefined = classification_metrics(scores.tolist(), references, task, n_bootstrap=100)
        for name, reason in undefined.items():  # e.g. a validation split with one class
            logger.warning("%s undefined: %s", name, reason)
        return results

    patience = training_args.early_stopping_patience
    callbacks = [EarlyStoppingCallback(patience)] if patience else []
    layer_decay = training_args.layer_decay
    if layer_decay is not None and not hasattr(model.config, "num_hidden_layers"):
        logger.info("No layer-wise lr decay: a %s config has no num_hidden_layers.", model.config.model_type)
        layer_decay = None
    if model_args.lora_r:
        layers = model_args.lora_target_modules.split(",") if model_args.lora_target_modules else None
        model = with_lora(model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout, layers)
    # linear evaluation, the SSL papers' protocol: what a frozen encoder's features give a trained head
    if training_args.linear_evaluation:
        model.base_model.requires_grad_(False)
    if training_args.frozen_backbone_epochs > 0:  # stage one: the head alone, frozen encoder; nothing of it is saved
        trainable = [weight for weight in model.base_model.parameters() if weight.requires_grad]
        for weight in trainable:
            weight.requires_grad_(False)
        with tempfile.TemporaryDirectory() as scratch:
            head_only = dataclasses.replace(
                training_args, output_dir=scratch, max_steps=-1, num_train_epochs=training_args.frozen_backbone_epochs,
                learning_rate=training_args.frozen_backbone_learning_rate or training_args.learning_rate,
                eval_strategy="no", save_strategy="no", load_best_model_at_end=False, report_to=[],
            )  # fmt: skip
            WeightedTrainer(model=model, args=head_only, train_dataset=train, data_collator=collate_classification,
                            class_weights=weights).train()  # fmt: skip
        for weight in trainable:  # not the weights fixed by design (a DINOv2 backbone's mask token)
            weight.requires_grad_(True)
    trainer = WeightedTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=collate_classification,
        processing_class=processor,  # saved with every checkpoint
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        class_weights=weights,
        layer_decay=layer_decay,
    )
    resume = training_args.resume_from_checkpoint
    trainer.train(resume_from_checkpoint=True if resume == "latest" else resume)  # "latest": output_dir's newest
    evaluation = trainer.evaluate()
    if model_args.lora_r:  # the adapters alone, and the merged model that evaluate.py and the Hub load like any other
        model.save_pretrained(Path(training_args.output_dir) / "lora_adapter",
                              is_main_process=trainer.is_world_process_zero())  # fmt: skip
        trainer.model = model = model.merge_and_unload()
    trainer.save_model()  # the weights and the processor
    if trainer.is_world_process_zero():  # the folder, card and push once, not once per process
        add_remote_pipelines(training_args.output_dir)
        (Path(training_args.output_dir) / "data_splits.json").write_text(json.dumps(data_splits, indent=1))
        write_card(
            model_args, data_args, training_args, model.config, evaluation, data_splits, layer_decay, has_drop_path
        )
        if push_to_hub:
            push_folder_to_hub(training_args.output_dir, training_args.hub_model_id, commit_message="Fine-tuned model")
    trainer.accelerator.wait_for_everyone()  # tearing the process group down while the main process saves can hang
    return evaluation


if __name__ == "__main__":
    main()
