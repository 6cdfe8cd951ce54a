"""Pushing a trained model folder, or a prepared dataset folder, to the Hugging Face Hub."""

from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi
from huggingface_hub.utils import filter_repo_objects

# Training leftovers that a model repository does not need.
IGNORED = ["checkpoints/*", "checkpoint-*", "runs/*", ".*", "*/.*", "*.bin", "*.pkl"]


def push_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    private: bool | None = None,
    commit_message: str = "Upload model",
    repo_type: str = "model",
) -> CommitInfo:
    """Create `repo_id` if needed and push what `folder` holds in one commit: weights (safetensors), config,
    processor, the remote-code files that `save_pretrained` copied, the model card and the reconstruction or
    evaluation pictures; or, with `repo_type="dataset"`, parquet shards and their dataset card. Training
    checkpoints, tracker logs and pickles stay behind."""
    folder = Path(folder)
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=folder / name)
        for name in filter_repo_objects(files, ignore_patterns=IGNORED)
    ]
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type)
    return api.create_commit(repo_id, operations=operations, commit_message=commit_message, repo_type=repo_type)


__all__ = ["push_folder_to_hub"]
