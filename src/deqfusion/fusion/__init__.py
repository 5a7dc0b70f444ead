from . import baselines  # noqa: F401  (registers tensor, lowrank, mi_matrix)
