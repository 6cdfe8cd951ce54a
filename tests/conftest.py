import pytest
import torch

from miram_hf import MiramConfig


def tiny_miram_config(**overrides) -> MiramConfig:
    """A MIRAM small enough for CPU tests: 32x32 inputs, 8-pixel patches (4x4 tokens), 2 encoder layers."""
    fields = dict(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=2,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        scales=[1, 2],
        num_landmarks=8,
        performer_features=32,
        linformer_k=16,
        nystrom_conv_kernel_size=3,
    )
    fields.update(overrides)
    return MiramConfig(**fields)


@pytest.fixture
def tiny_config() -> MiramConfig:
    return tiny_miram_config()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def record_hub_commits(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """No Hub is reachable here: the Hub client's create_repo and create_commit are replaced by ones that record each
    commit as {"repo_id", "message", "files": {path in repo: bytes}}."""
    from huggingface_hub import CommitInfo, HfApi, RepoUrl

    commits = []

    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        files = {}
        for operation in operations:
            source = operation.path_or_fileobj
            files[operation.path_in_repo] = source if isinstance(source, bytes) else open(source, "rb").read()
        commits.append({"repo_id": repo_id, "message": commit_message, "files": files})
        url = f"https://huggingface.co/{repo_id}/commit/{len(commits):040x}"
        return CommitInfo(
            commit_url=url, commit_message=commit_message, commit_description="", oid=f"{len(commits):040x}"
        )

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return commits


@pytest.fixture
def fake_hub(monkeypatch) -> list[dict]:
    return record_hub_commits(monkeypatch)
