import torch

from deqfusion.benchmarking.memory import TensorMemoryTracker, measure_peak_memory, read_rss_mb
from deqfusion.benchmarking.step import train_step_benchmark

MB = 2**20


def test_tracker_counts_live_tensors_and_frees():
    with TensorMemoryTracker() as tr:
        a = torch.ones(MB // 4)  # 1 MiB of float32
        b = torch.ones(MB // 2)  # 2 MiB
        assert tr.current == 3 * MB
        del b
        assert tr.current == MB
        c = torch.ones(MB // 4)
        v = a.view(2, -1)  # a view is not new memory
        a.add_(1.0)  # nor is an in-place update
    assert tr.peak == 3 * MB and tr.current == 2 * MB
    del a, c, v
    assert tr.current == 0


def test_tracker_sees_the_backward_pass():
    w = torch.randn(256, 256, requires_grad=True)
    x = torch.randn(64, 256)
    y = (x @ w).relu().sum()
    mem = measure_peak_memory(lambda: y.backward(), "cpu")
    assert mem["tensor_kind"] == "cpu_dispatch_tracker"
    assert mem["tensor_peak_mb"] * MB >= w.numel() * 4  # at least the weight gradient


def test_existing_tensors_are_not_counted():
    x = torch.randn(MB // 4)
    mem = measure_peak_memory(lambda: x.mul_(2.0), "cpu")
    assert mem["tensor_peak_mb"] == 0.0


def test_rss_readable_on_linux():
    rss, hwm = read_rss_mb()
    assert rss is None or (rss > 0 and hwm >= rss - 1)


def test_step_benchmark_memory_grows_with_unrolled_depth():
    kw = dict(batch=16, width=16, modalities=2, repeats=1, measure_memory=True)
    short = train_step_benchmark("unrolled", unrolled_steps=1, **kw)
    long = train_step_benchmark("unrolled", unrolled_steps=8, **kw)
    assert 0 < short["tensor_peak_mb"] < long["tensor_peak_mb"]
    # inference stores no graph: less than training at the same depth
    inf = train_step_benchmark("unrolled", unrolled_steps=8, inference=True, **kw)
    assert inf["tensor_peak_mb"] < long["tensor_peak_mb"]
