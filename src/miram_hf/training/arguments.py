"""What the scripts' argument groups share with transformers: TrainingArguments' own fields, with a recipe's
defaults."""

from dataclasses import Field, field

from transformers import TrainingArguments


def training_argument(name: str, default, note: str = "") -> Field:
    """TrainingArguments' field `name` with another default: its help is kept (with `note` added), so that `--help`
    says what transformers says of it."""
    metadata = TrainingArguments.__dataclass_fields__[name].metadata
    return field(default=default, metadata={**metadata, "help": f"{metadata.get('help', '')} {note}".strip()})


__all__ = ["training_argument"]
