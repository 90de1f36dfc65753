"""Face preprocessing: frame/video readers, detection, alignment, crop."""

from edmdbn_jax.preprocess.face import align_frames
from edmdbn_jax.preprocess.face import estimate_apex
from edmdbn_jax.preprocess.face import FacePreprocessor
from edmdbn_jax.preprocess.face import landmarks
from edmdbn_jax.preprocess.io import frame_number
from edmdbn_jax.preprocess.io import list_frames
from edmdbn_jax.preprocess.io import load_image
from edmdbn_jax.preprocess.io import read_video

__all__ = ["FacePreprocessor", "align_frames", "estimate_apex", "frame_number",
           "landmarks", "list_frames", "load_image", "read_video"]
