"""The RD4AD model: frozen teacher -> one-class bottleneck (OCBE) -> student decoder, and the backbone and
bottleneck registries. May import rdbench.registry only."""

from rdbench.models.backbones import BACKBONES, BackboneSpec, TeacherWeightsError
from rdbench.models.rd import RDModel, build_rd_model

__all__ = ["BACKBONES", "BackboneSpec", "RDModel", "TeacherWeightsError", "build_rd_model"]
