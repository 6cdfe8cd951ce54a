"""The scripts' training arguments: TrainingArguments subclasses with each recipe's defaults and options. They live
in the package, not in the scripts, because Trainer pickles its arguments into every checkpoint (training_args.bin)
and a class must be importable to be read back."""

from dataclasses import Field, dataclass, field

import torch
from transformers import SchedulerType, TrainingArguments


def training_argument(name: str, default, note: str = "") -> Field:
    """TrainingArguments' field `name` with another default: its help is kept (with `note` added), so that `--help`
    says what transformers says of it."""
    metadata = TrainingArguments.__dataclass_fields__[name].metadata
    return field(default=default, metadata={**metadata, "help": f"{metadata.get('help', '')} {note}".strip()})


@dataclass
class PretrainingTrainingArguments(TrainingArguments):
    """TrainingArguments as scripts/pretrain.py's own loop reads them, with MAE's pretraining recipe as the defaults
    where it differs from fine-tuning's: AdamW (0.9, 0.95), weight decay 0.05, 5% linear warmup then half-cosine, and
    its lr rule (`base_learning_rate`; the default `learning_rate`, 2e-3, suits the small batches of a laptop run).
    bf16 autocast by default on a GPU that has it. The script refuses the TrainingArguments options that are not in
    `IMPLEMENTED`, rather than ignore them."""

    output_dir: str | None = training_argument("output_dir", "outputs/pretrain")
    per_device_train_batch_size: int = training_argument("per_device_train_batch_size", 16)
    learning_rate: float = training_argument("learning_rate", 2e-3, "The peak lr, unless base_learning_rate is given.")
    weight_decay: float = training_argument("weight_decay", 0.05)
    adam_beta2: float = training_argument("adam_beta2", 0.95)
    num_train_epochs: float = training_argument("num_train_epochs", 4)
    lr_scheduler_type: SchedulerType | str = training_argument("lr_scheduler_type", "cosine")
    warmup_steps: float = training_argument("warmup_steps", 0.05)
    logging_steps: float = training_argument("logging_steps", 10)
    save_total_limit: int | None = training_argument("save_total_limit", 2)
    report_to: None | str | list[str] = training_argument("report_to", "tensorboard")
    seed: int = training_argument("seed", 0)
    bf16: bool | None = training_argument("bf16", None, "Default: on a GPU that computes in bf16.")
    # this loop's own
    base_learning_rate: float | None = field(
        default=None, metadata={"help": "MAE's rule, lr = blr x global batch / 256 (MAE: 1.5e-4, for big batches)"}
    )
    on_nonfinite_loss: str = field(
        default="stop", metadata={"help": "stop, or skip: what a NaN or infinite loss (a diverging run) does"}
    )
    probe_steps: int = field(default=500, metadata={"help": "probe every this many steps (and at steps 0 and last)"})

    # TrainingArguments' fields the loop reads
    IMPLEMENTED = (
        "output_dir", "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
        "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "lr_scheduler_type",
        "lr_scheduler_kwargs", "warmup_steps", "max_grad_norm", "bf16", "fp16", "activation_checkpointing",
        "gradient_checkpointing", "torch_compile", "torch_compile_backend", "save_steps", "save_total_limit",
        "resume_from_checkpoint", "logging_steps", "report_to", "seed", "push_to_hub", "hub_model_id",
        "dataloader_num_workers", "use_cpu",
    )  # fmt: skip

    def __post_init__(self):
        """Flags that contradict each other are refused as they are parsed."""
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id (e.g. org/miram-vitb).")
        if self.on_nonfinite_loss not in ("stop", "skip"):
            raise ValueError(f"--on_nonfinite_loss is stop or skip, got {self.on_nonfinite_loss!r}.")
        automatic = self.bf16 is None
        self.bf16 = bool(self.bf16)
        super().__post_init__()
        if automatic and not self.use_cpu:
            self.mixed_precision = gpu_precision(self.mixed_precision)
            self.bf16 = self.mixed_precision == "bf16"


def gpu_precision(chosen: str) -> str:
    """bf16 on a GPU that computes in it, where neither the flags nor accelerate's setting chose a precision (`chosen`
    is "no": accelerate's default, which `accelerate launch` passes on when its config names none)."""
    return "bf16" if chosen == "no" and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else chosen


@dataclass
class FinetuningArguments(TrainingArguments):
    """TrainingArguments with the fine-tuning recipes' own options: MAE's layer-wise lr decay, class weighting, early
    stopping on the validation split, a first stage on the head alone, and linear evaluation."""

    layer_decay: float | None = field(default=0.75)
    class_weighting: bool = field(default=True)
    early_stopping_patience: int | None = field(default=5)
    frozen_backbone_epochs: float = field(default=0, metadata={"help": "first train the head alone this long"})
    frozen_backbone_learning_rate: float | None = field(
        default=None, metadata={"help": "the head-alone stage's learning rate (default: learning_rate)"}
    )
    linear_evaluation: bool = field(default=False, metadata={"help": "train the head alone, the encoder frozen"})
    remove_unused_columns: bool = training_argument(
        "remove_unused_columns", False, "Off here: the on-the-fly transform makes the inputs from the image column."
    )

    def __post_init__(self):
        """Flags that contradict each other are refused as they are parsed, before any data or model is loaded."""
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id (e.g. org/miram-vitb-cbis-pathology).")
        if self.linear_evaluation and self.frozen_backbone_epochs:
            raise ValueError("--linear_evaluation keeps the encoder frozen throughout: drop --frozen_backbone_epochs.")
        super().__post_init__()


__all__ = ["FinetuningArguments", "PretrainingTrainingArguments", "gpu_precision", "training_argument"]
