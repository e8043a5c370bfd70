"""Faces: landmarks from a real detector (MediaPipe FaceMesh, the ``video`` extra) and the lip
features read from them.

``landmarks`` is pure numpy (no detector needed); ``facemesh`` wraps MediaPipe and imports it only
when a tracker is opened, so everything else works without the extra.
"""

from streamrt.models.faces.facemesh import FaceLandmarker, FaceTrack, MediaPipeFaceMesh, load_face_mesh
from streamrt.models.faces.landmarks import LIP_LANDMARKS, LipFeatures, lip_features

__all__ = ["FaceLandmarker", "FaceTrack", "MediaPipeFaceMesh", "load_face_mesh", "LIP_LANDMARKS", "LipFeatures",
           "lip_features"]
