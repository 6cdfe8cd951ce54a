"""Each joint-embedding loss against a slow, direct transcription of its paper's pseudocode or reference code, on one
process and, through accelerate, on two processes that split the batch."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import launch_on_two_cpu_processes
from safetensors.torch import load_file

from miram_hf.modeling.byol import ByolLoss
from miram_hf.modeling.dino import DinoLoss
from miram_hf.modeling.mocov3 import MocoV3Loss
from miram_hf.modeling.simclr import NTXentLoss
from miram_hf.modeling.swav import SwavLoss, sinkhorn_knopp


def random_embeddings(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ transcriptions


def simclr_paper_loss(z_0: torch.Tensor, z_1: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR, Algorithm 1: 2N views, l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t), averaged over the
    2N (i, j) positive pairs."""
    z = F.normalize(torch.cat([z_0, z_1]), dim=1)
    n = len(z_0)
    similarity = z @ z.T

    def pair_loss(i: int, j: int) -> torch.Tensor:
        denominator = sum(torch.exp(similarity[i, k] / temperature) for k in range(2 * n) if k != i)
        return -torch.log(torch.exp(similarity[i, j] / temperature) / denominator)

    return sum(pair_loss(k, k + n) + pair_loss(k + n, k) for k in range(n)) / (2 * n)


def mocov3_paper_loss(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """MoCo v3, Algorithm 1's ctr(q, k): CrossEntropyLoss(q k^T / tau, range(N)) * 2 tau, on normalised q and k."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    losses = [-torch.log_softmax(q[i] @ k.T / tau, dim=0)[i] for i in range(len(q))]
    return torch.stack(losses).mean() * 2 * tau


def dino_reference_loss(student, teacher, center, student_temp, teacher_temp, crops, global_crops=2):
    """DINO's DINOLoss.forward, line by line."""
    student_out = (student / student_temp).chunk(crops)
    teacher_out = F.softmax((teacher - center) / teacher_temp, dim=-1).detach().chunk(global_crops)
    total_loss, n_loss_terms = 0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
            total_loss += loss.mean()
            n_loss_terms += 1
    return total_loss / n_loss_terms


def swav_reference_sinkhorn(out: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's distributed_sinkhorn on one process, line by line."""
    Q = torch.exp(out / epsilon).t()  # noqa: N806 (the reference's names)
    B = Q.shape[1]  # noqa: N806
    K = Q.shape[0]  # noqa: N806
    Q /= torch.sum(Q)
    for _ in range(iterations):
        sum_of_rows = torch.sum(Q, dim=1, keepdim=True)
        Q /= sum_of_rows
        Q /= K
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def swav_reference_loss(output, bs, nmb_crops, crops_for_assign=(0, 1), temperature=0.1):
    """main_swav.py's loss loop (no queue), line by line."""
    loss = 0
    for crop_id in crops_for_assign:
        with torch.no_grad():
            out = output[bs * crop_id : bs * (crop_id + 1)].detach()
            q = swav_reference_sinkhorn(out)[-bs:]
        subloss = 0
        for v in np.delete(np.arange(np.sum(nmb_crops)), crop_id):
            x = output[bs * v : bs * (v + 1)] / temperature
            subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
        loss += subloss / (np.sum(nmb_crops) - 1)
    return loss / len(crops_for_assign)


# ----------------------------------------------------------------------------------------------- one process


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_is_simclr_algorithm_1(temperature):
    z_0, z_1 = random_embeddings(6, 8, seed=0), random_embeddings(6, 8, seed=1)
    expected = simclr_paper_loss(z_0, z_1, temperature)
    torch.testing.assert_close(NTXentLoss(temperature)(z_0, z_1), expected)


def test_nt_xent_is_low_for_matching_views_and_high_for_mismatched():
    z = random_embeddings(8, 16)
    criterion = NTXentLoss(0.1)
    assert criterion(z, z + 0.01 * random_embeddings(8, 16, seed=2)) < criterion(z, z.roll(1, 0))


def test_mocov3_loss_is_algorithm_1_and_leaves_the_keys_alone():
    query = random_embeddings(5, 8, seed=0).requires_grad_()
    key = random_embeddings(5, 8, seed=1).requires_grad_()
    loss = MocoV3Loss(0.2)(query, key)
    torch.testing.assert_close(loss, mocov3_paper_loss(query, key, 0.2))
    loss.backward()
    assert query.grad.abs().sum() > 0 and key.grad is None


def test_byol_loss_is_the_normalised_mean_squared_error():
    prediction, target = random_embeddings(4, 8, seed=0).requires_grad_(), random_embeddings(4, 8, seed=1)
    expected = ((F.normalize(prediction, dim=1) - F.normalize(target, dim=1)) ** 2).sum(1).mean()
    loss = ByolLoss()(prediction, target.requires_grad_())
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert target.grad is None  # the target is a stop-gradient
    assert ByolLoss()(target, 3 * target).item() == pytest.approx(0.0, abs=1e-6)


def test_dino_loss_is_the_reference_with_centring_and_a_moving_centre():
    batch, crops, k = 3, 4, 10  # 2 global + 2 local crops
    student, teacher = random_embeddings(crops * batch, k, seed=0), random_embeddings(2 * batch, k, seed=1)
    criterion = DinoLoss(k, student_temperature=0.1, center_momentum=0.9)
    center = torch.zeros(1, k)
    for teacher_temperature in (0.04, 0.07):  # the second call sees the centre the first one moved
        expected = dino_reference_loss(student, teacher, center, 0.1, teacher_temperature, crops)
        torch.testing.assert_close(criterion(student, teacher, teacher_temperature, 2), expected)
        center = center * 0.9 + teacher.mean(0, keepdim=True) * 0.1
        torch.testing.assert_close(criterion.center, center)
    criterion.eval()  # evaluation leaves the centre where training put it
    criterion(student, teacher, 0.04, 2)
    torch.testing.assert_close(criterion.center, center)


def test_sinkhorn_codes_are_the_reference_and_equipartition_the_batch():
    scores = F.normalize(random_embeddings(12, 8), dim=1) @ F.normalize(random_embeddings(5, 8, seed=1), dim=1).T
    codes = sinkhorn_knopp(scores)
    torch.testing.assert_close(codes, swav_reference_sinkhorn(scores))
    torch.testing.assert_close(codes.sum(1), torch.ones(12))  # each sample is a distribution over prototypes
    # more iterations: every prototype gets B / K of the batch
    torch.testing.assert_close(
        sinkhorn_knopp(scores, iterations=50).sum(0), torch.full((5,), 12 / 5), atol=1e-3, rtol=0
    )


def test_swav_loss_is_the_reference_loop():
    batch, crops = 4, 5
    scores = F.normalize(random_embeddings(crops * batch, 8), dim=1) @ F.normalize(random_embeddings(6, 8), dim=1).T
    expected = swav_reference_loss(scores, batch, [2, 3])
    torch.testing.assert_close(SwavLoss()(list(scores.split(batch))), expected)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: NTXentLoss(0.0), "temperature must be positive"),
        (lambda: MocoV3Loss(-1.0), "temperature must be positive"),
        (lambda: DinoLoss(8, student_temperature=0.0), "student_temperature must be positive"),
        (lambda: SwavLoss(sinkhorn_epsilon=0.0), "must be positive"),
    ],
)
def test_bad_loss_settings_say_how_to_fix_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ------------------------------------------------------------------------------------------------ two processes

WORLD = 2
# Each process holds its half of one batch and saves what it computes, for the test to compare with one process that
# holds the whole batch.
SPLIT_BATCH_WORKER = """
import sys

from accelerate import Accelerator
from safetensors.torch import save_file
from test_ssl_losses import random_embeddings

from miram_hf.modeling.dino import DinoLoss
from miram_hf.modeling.mocov3 import MocoV3Loss
from miram_hf.modeling.simclr import NTXentLoss
from miram_hf.modeling.swav import sinkhorn_knopp

state = Accelerator()
rank, half = state.process_index, slice(state.process_index * 4, state.process_index * 4 + 4)
z_0 = random_embeddings(8, 16, seed=0)[half].requires_grad_()
z_1 = random_embeddings(8, 16, seed=1)[half].requires_grad_()
nt_xent = NTXentLoss(0.2)(z_0, z_1)
nt_xent.backward()
mocov3 = MocoV3Loss(0.2)(random_embeddings(8, 16, seed=2)[half], random_embeddings(8, 16, seed=3)[half])
codes = sinkhorn_knopp(random_embeddings(8, 5, seed=4)[half])
dino = DinoLoss(5)
dino(random_embeddings(8, 5, seed=5)[half].repeat(2, 1), random_embeddings(8, 5, seed=6)[half].repeat(2, 1))
results = dict(nt_xent=nt_xent, nt_xent_grad=z_0.grad, mocov3=mocov3, codes=codes, center=dino.center)
save_file({key: value.detach().contiguous() for key, value in results.items()}, f"{sys.argv[1]}/rank{rank}.safetensors")
# both processes done before either tears the process group down (exiting alone can abort the other in gloo)
state.wait_for_everyone()
state.end_training()
"""


def test_losses_over_two_processes_equal_one_process_over_the_whole_batch(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(SPLIT_BATCH_WORKER)
    launch_on_two_cpu_processes(worker, str(tmp_path), pythonpath=Path(__file__).parent)
    ranks = [load_file(tmp_path / f"rank{rank}.safetensors") for rank in range(WORLD)]

    z_0 = random_embeddings(8, 16, seed=0).requires_grad_()
    z_1 = random_embeddings(8, 16, seed=1)
    whole = NTXentLoss(0.2)(z_0, z_1)
    whole.backward()
    # every process's queries meet the negatives of both: the mean of the two losses is the whole batch's loss
    torch.testing.assert_close((ranks[0]["nt_xent"] + ranks[1]["nt_xent"]) / 2, whole.detach())
    # and the gradients of the other process's loss reach this process's embeddings through the all-gather
    gradients = torch.cat([rank["nt_xent_grad"] for rank in ranks])
    torch.testing.assert_close(gradients / WORLD, z_0.grad)

    whole_mocov3 = MocoV3Loss(0.2)(random_embeddings(8, 16, seed=2), random_embeddings(8, 16, seed=3))
    torch.testing.assert_close((ranks[0]["mocov3"] + ranks[1]["mocov3"]) / 2, whole_mocov3)
    # Sinkhorn equipartitions the samples of both processes together, as on one process
    torch.testing.assert_close(
        torch.cat([rank["codes"] for rank in ranks]), sinkhorn_knopp(random_embeddings(8, 5, seed=4))
    )
    # DINO's centre is the mean teacher output over both processes, the same on each
    center = 0.1 * random_embeddings(8, 5, seed=6).mean(0, keepdim=True)
    for rank in ranks:
        torch.testing.assert_close(rank["center"], center)
