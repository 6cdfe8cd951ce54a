import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import torch
from tiny_configs import tiny_miram_config

from miram_hf import MiramConfig

# The start of a child process's script in tests of the remote-code route: after `hide_miram_hf()`, `import miram_hf`
# fails as if the package were not installed, so only what save_pretrained copied next to the weights can load a model.
WITHOUT_MIRAM_HF = textwrap.dedent(
    """
    import importlib.abc
    import sys


    class NoMiramHf(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "miram_hf":
                raise ImportError(f"{name} is not installed here")


    def hide_miram_hf():
        sys.meta_path.insert(0, NoMiramHf())
    """
)


def launch_on_two_cpu_processes(
    script: Path, *arguments: str, pythonpath: Path | None = None, config_file: Path | None = None, timeout: int = 300
) -> None:
    """Run `script` as `accelerate launch` runs it on two machines' worth of processes, on the CPU (gloo); with
    `config_file`, as that accelerate config (its process count and precision replaced) sets it up."""
    setup = ["--config_file", str(config_file)] if config_file else ["--multi_gpu", "--num_machines", "1"]
    command = [sys.executable, "-m", "accelerate.commands.launch", *setup, "--num_processes", "2",
               "--mixed_precision", "no", "--dynamo_backend", "no", str(script), *arguments]  # fmt: skip
    environment = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")])
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        _, stderr = launcher.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # a hang: every process prints its Python stacks (faulthandler, on SIGABRT) into the failure message
        for process in [*psutil.Process(launcher.pid).children(recursive=True), psutil.Process(launcher.pid)]:
            process.send_signal(signal.SIGABRT)
        _, stderr = launcher.communicate()
        pytest.fail(f"`accelerate launch` hung for {timeout} s; where each process was:\n{stderr[-12000:]}")
    assert launcher.returncode == 0, stderr[-4000:]


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


def run_card_code(folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Runs the Python blocks of `folder`'s model card as a reader would: from the folder's parent (the card names the
    model by its folder name), with a CBIS-DDSM-format `mammogram.dcm` there. The first block (with miram_hf) runs in
    this process and its namespace is returned; the second (transformers alone) in a child process where miram_hf
    cannot be imported."""
    from dicom_factory import cbis_ddsm_dicom

    blocks = (folder / "README.md").read_text().split("```python\n")[1:]
    code = [block.split("```")[0] for block in blocks]
    assert len(code) == 2, f"expected the two loading blocks, found {len(code)}"
    cbis_ddsm_dicom(folder.parent / "mammogram.dcm")
    monkeypatch.chdir(folder.parent)
    namespace: dict = {}
    exec(compile(code[0], str(folder / "README.md"), "exec"), namespace)
    child = WITHOUT_MIRAM_HF + "\nhide_miram_hf()\n" + code[1]
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=folder.parent,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return namespace
