"""Run by tests/training/test_distributed.py under ``torchrun --nproc_per_node=2``: DEQ fusion gradients under
DistributedDataParallel (implicit backward through a custom autograd Function; Jacobian loss through autograd.grad
with create_graph) against single-process gradients. Writes one JSON line per check to the file in argv[1]."""

import json
import sys

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from deqfusion import DEQFusion
from deqfusion.training import distributed as ddp


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(6, 8)
        self.fusion = DEQFusion([8, 8], 8, f_solver="anderson", f_tol=1e-12, f_max_iter=200, b_mode="implicit",
                                b_tol=1e-12, b_max_iter=200, jac_n_probes=2)
        with torch.no_grad():  # a contractive map, so that every solve converges
            for p in self.fusion.parameters():
                if p.dim() >= 2:
                    p.mul_(0.3)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        h = torch.tanh(self.enc(x))
        z, info = self.fusion([h, h.roll(1, dims=1)])
        return self.head(z).squeeze(1), info


def loss_of(model, x, y, lam):
    torch.manual_seed(1234 + ddp.rank())  # the Hutchinson probes: the same draws with and without DDP
    pred, info = model(x)
    return (pred - y).square().mean() + lam * info.jac_loss


def grads(model):
    out = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    return out


def main():
    ddp.setup_from_env("cpu")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Net().double()
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(32, 6, generator=g, dtype=torch.float64), torch.randn(32, generator=g, dtype=torch.float64)
    mine = ddp.shard_order(torch.arange(32))
    wrapped = DistributedDataParallel(model)
    report = {"world_size": ddp.world_size(), "rank": ddp.rank()}
    for lam in (0.0, 0.5):
        # single process, this rank's shard only, then averaged by hand
        loss_of(model, x[mine], y[mine], lam).backward()
        local = ddp.all_reduce_sum(grads(model)) / ddp.world_size()
        # DDP on the shard
        loss_of(wrapped, x[mine], y[mine], lam).backward()
        with_ddp = grads(model)
        report[f"ddp_vs_local_average_lam{lam}"] = float((with_ddp - local).norm() / local.norm())
        if lam == 0.0:  # without random probes the full-batch gradient is the reference
            loss_of(model, x, y, lam).backward()
            full = grads(model)
            report["ddp_vs_full_batch"] = float((with_ddp - full).norm() / full.norm())
    if ddp.is_main():
        with open(sys.argv[1], "w") as fh:
            json.dump(report, fh)
    del wrapped  # before leaving the group (see ddp.cleanup)
    ddp.cleanup()


if __name__ == "__main__":
    main()
