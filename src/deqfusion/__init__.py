"""deqfusion: Deep Equilibrium Multimodal Fusion for PyTorch."""

__version__ = "0.1.0"
