"""Training the joint-embedding methods with transformers' `Trainer` rather than `scripts/pretrain.py`."""

from transformers import TrainerCallback


class JointEmbeddingCallback(TrainerCallback):
    """Drives a BYOL / DINO / MoCo v3 / SimCLR / SwAV model's schedules under `Trainer`, as `scripts/pretrain.py`
    does: `start_training_step` before each optimizer step (DINO's teacher temperature and frozen last layer, SwAV's
    frozen prototypes and queue) and `update_teachers` after it (the moving-average teachers).

    Example:

    ```python
    >>> trainer = Trainer(model=DinoForPreTraining(config), args=args, train_dataset=views,
    ...                   callbacks=[JointEmbeddingCallback()])
    ```
    """

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        model.start_training_step(state.global_step + 1, state.max_steps)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        model.update_teachers()


__all__ = ["JointEmbeddingCallback"]
