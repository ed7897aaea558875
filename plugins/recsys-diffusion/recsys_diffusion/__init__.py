"""recsys plugin: diffusion recommenders (DiffRec, L-DiffRec) and their one-step students.

Models register through the ``recsys.models`` entry point: ``diffrec``, ``ldiffrec`` and
``diffrec_student``.
"""

from recsys_diffusion.diffusion import Denoiser, GaussianDiffusion, ImportanceSampler
from recsys_diffusion.models import DiffRec, DiffRecConfig, LDiffRec, LDiffRecConfig
from recsys_diffusion.student import DiffRecStudent, DiffRecStudentConfig

__all__ = [
    "Denoiser",
    "DiffRec",
    "DiffRecConfig",
    "DiffRecStudent",
    "DiffRecStudentConfig",
    "GaussianDiffusion",
    "ImportanceSampler",
    "LDiffRec",
    "LDiffRecConfig",
]
