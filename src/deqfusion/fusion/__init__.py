"""Fusion modules. Importing this package registers every fusion with :mod:`deqfusion.fusion.registry`."""

from . import baselines as _baselines  # noqa: F401  (registers tensor, lowrank, mi_matrix)
from . import simple  # noqa: F401  (registers concat, sum)
from .base import FusionModule
from .deq_fusion import DEQFusion, UnrolledFusion
from .info import FusionInfo
from .registry import FusionFactory, available_fusions, build_fusion, make_fusion, register_fusion

__all__ = ["DEQFusion", "UnrolledFusion", "FusionInfo", "FusionModule", "FusionFactory", "make_fusion",
           "available_fusions", "build_fusion",
           "register_fusion"]
