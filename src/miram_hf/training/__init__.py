"""Machinery shared by the pretraining and fine-tuning scripts."""

from .optimization import parameter_groups

__all__ = ["parameter_groups"]
