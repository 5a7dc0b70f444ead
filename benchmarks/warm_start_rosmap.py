"""Forward solver iterations per epoch with and without warm start, in full-batch ROSMAP training.

The omics classifier (hidden 500, LayerNorm-ed features as in the omics command, DEQ fusion with the library
defaults, the omics experiment's ROSMAP loss with lambda_jac 5, Adam lr 1e-3, weight decay 1e-4,
dropout 0.5 or ``--dropout``)
trained full-batch on the ROSMAP training files for ``--epochs`` epochs twice from the same seed: cold (every solve
starts at zeros) and warm (each training sample's solve starts at its fixed point of the previous epoch:
``enable_warm_start`` and ``sample_ids``). Reports the
forward and adjoint iterations per epoch (mean over the run, and over the last half), the wall time, the last
training loss and the test accuracy of the final model. Prints JSON; --out also writes it.

    python benchmarks/warm_start_rosmap.py --epochs 100 --out docs/results/benchmarks/warm_start_rosmap.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _report import report  # benchmarks/_report.py, beside this script

from deqfusion.data.mogonet import load_mogonet, resolve_data_dir
from deqfusion.models.omics import OmicsClassifier, omics_loss


def train(data, epochs: int, warm: bool, seed: int, dropout: float) -> dict:
    torch.manual_seed(seed)
    model = OmicsClassifier(data.in_dims, data.num_classes, hidden=500, fusion="deq",
                            dropout=dropout, feature_norm="layer")
    xs, y = list(data.x_train), data.y_train
    ids = torch.arange(y.shape[0])
    if warm:
        model.fusion.enable_warm_start(y.shape[0])

        def pass_ids(module, args, kwargs):  # the classifier calls its fusion without sample_ids
            return args, dict(kwargs, sample_ids=ids) if module.training else kwargs

        model.fusion.register_forward_pre_hook(pass_ids, with_kwargs=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    fwd, bwd, losses = [], [], []
    t = time.perf_counter()
    for _ in range(epochs):
        model.train()
        opt.zero_grad(set_to_none=True)
        out = model(xs)
        loss, _ = omics_loss(out, y, lambda_jac=5.0)
        loss.backward()
        opt.step()
        fwd.append(out.info.forward.nstep)
        bwd.append(out.info.backward.nstep)
        losses.append(float(loss))
    seconds = time.perf_counter() - t
    model.eval()
    with torch.no_grad():
        acc = float((model(list(data.x_test)).logits.argmax(1) == data.y_test).float().mean())
    half = epochs // 2
    return dict(warm=warm, dropout=dropout, epochs=epochs, seconds=seconds, fwd_steps_per_epoch=statistics.mean(fwd),
                fwd_steps_per_epoch_last_half=statistics.mean(fwd[half:]), bwd_steps_per_epoch=statistics.mean(bwd),
                max_fwd_steps=max(fwd), last_loss=losses[-1], test_acc=acc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--dropout", nargs="+", type=float, default=[0.5])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_mogonet(resolve_data_dir("rosmap", args.data_dir)).minmax_scaled()
    rows = [train(data, args.epochs, warm, seed, dropout) for dropout in args.dropout for seed in args.seeds
            for warm in (False, True)]
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    report(dict(command=f"python benchmarks/warm_start_rosmap.py {argv_s}".strip(), torch=torch.__version__,
                threads=args.threads, runs=rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
