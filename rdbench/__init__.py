"""rdbench: benchmark and reproducibility harness for RD4AD (Reverse Distillation, CVPR 2022)."""

__version__ = "0.1.0"
