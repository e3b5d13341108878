"""The AI second read, in plain PyTorch (no Django imports anywhere in this package).

    pipe = TwoStagePipeline.from_directory("apps/diagnosis/weights")
    result = pipe.run(open("scan.dcm", "rb").read())

Stage 1 (router) decides chest_xray | brain_mri | unsupported and refuses what it does not know;
stage 2 (a specialist) diagnoses and explains with a Grad-CAM heatmap computed in the same forward
pass. ``training`` trains and evaluates the models; ``decode`` reads PNG/JPEG/DICOM.
"""

from .artifact import Artifact, find_artifacts, load_artifact
from .core import PipelineResult, TwoStagePipeline
from .decode import DecodedImage, DecodeError, decode_image

__all__ = [
    "Artifact",
    "DecodeError",
    "DecodedImage",
    "PipelineResult",
    "TwoStagePipeline",
    "decode_image",
    "find_artifacts",
    "load_artifact",
]
