"""deqfusion: Deep Equilibrium Multimodal Fusion for PyTorch.

>>> from deqfusion import DEQFusion
>>> fusion = DEQFusion(in_dims=[1000, 1000, 503], out_dim=500)
>>> fused, info = fusion([x1, x2, x3])  # doctest: +SKIP
"""

from .deq import DEQLayer, SolverResult, deq_forward, jac_frobenius_sq, solve, spectral_radius
from .fusion import DEQFusion, FusionInfo, UnrolledFusion, available_fusions, build_fusion

__version__ = "0.1.0"

__all__ = [
    "DEQFusion", "UnrolledFusion", "build_fusion", "available_fusions", "FusionInfo", "SolverResult", "solve",
    "deq_forward", "jac_frobenius_sq", "spectral_radius", "DEQLayer",
]
