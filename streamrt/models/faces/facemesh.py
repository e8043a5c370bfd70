"""MediaPipe FaceMesh as a face landmarker: one model, one tracking graph per video stream.

    mesh = load_face_mesh()            # checks the ``video`` extra; loads nothing yet
    track = mesh.open()                # one per video stream: the graph keeps its tracking state
    points = track.landmarks(rgb)      # (468, 3) pixels, or None when no face is found
    track.close()

MediaPipe 0.10.21 (the last release that ships the face models and the ``mp.solutions`` graphs)
runs FaceMesh as a calculator graph that holds the previous frame's landmarks to track the face
(``use_prev_landmarks``), so a graph serves one stream: the model files are shared (memory-mapped
TFLite), the tracking state is per stream. The graph takes one image per call: it does not batch.

The graph is built from its packaged ``face_landmark_front_cpu.binarypb`` with MediaPipe's
``SolutionBase`` and no calculator options: ``mp.solutions.face_mesh.FaceMesh`` sets its two
confidence thresholds through a protobuf API (``FieldDescriptor.label``) that protobuf 7 removed,
while the same graph with its built-in thresholds (0.5, FaceMesh's defaults) runs on protobuf 7.
That is why the ``video`` extra can keep the protobuf that onnxruntime and Ray need.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from streamrt.errors import ModelLoadError

EXTRA_HINT = "pip install 'streamrt[video]' (see the Makefile's setup: mediapipe==0.10.21 comes with --no-deps)"
GRAPH = "modules/face_landmark/face_landmark_front_cpu.binarypb"


@runtime_checkable
class FaceTrack(Protocol):
    """One stream's face tracker (not thread-safe; one step at a time)."""

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """(H, W, 3) uint8 RGB -> (468, 3) float32 landmarks in pixels (x, y, z), or None: no face."""

    def close(self) -> None:
        """Free what the tracker holds (idempotent)."""


@runtime_checkable
class FaceLandmarker(Protocol):
    """Shared: opens a tracker per video stream."""

    name: str

    def open(self) -> FaceTrack: ...


class MediaPipeFaceMesh:
    """FaceMesh (468 landmarks, no iris refinement), tracking mode."""

    name = "mediapipe-facemesh"

    def __init__(self, graph_path: Path):
        self.graph_path = graph_path

    def open(self) -> "_MediaPipeTrack":
        return _MediaPipeTrack(self.graph_path)

    def describe(self) -> dict:
        import mediapipe

        return {"landmarker": self.name, "mediapipe": mediapipe.__version__, "batching": "none (one graph per stream)"}


class _MediaPipeTrack:
    def __init__(self, graph_path: Path):
        from mediapipe.python.solution_base import SolutionBase

        self._graph = SolutionBase(
            binary_graph_path=str(graph_path),
            side_inputs={"num_faces": 1, "with_attention": False, "use_prev_landmarks": True},
            outputs=["multi_face_landmarks"],
        )

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        if self._graph is None:
            raise RuntimeError("this face tracker is closed")
        h, w = rgb.shape[:2]
        found = self._graph.process(np.ascontiguousarray(rgb)).multi_face_landmarks
        if not found:
            return None
        pts = np.array([(p.x, p.y, p.z) for p in found[0].landmark], dtype=np.float32)
        pts *= np.array([w, h, w], dtype=np.float32)
        return pts

    def close(self) -> None:
        if self._graph is not None:
            graph, self._graph = self._graph, None
            graph.close()


def load_face_mesh() -> MediaPipeFaceMesh:
    """The packaged FaceMesh; ``ModelLoadError`` naming the ``video`` extra when MediaPipe is missing
    (nothing is imported or loaded here beyond finding the package)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        raise ModelLoadError(f"lip activity needs MediaPipe FaceMesh, which is not installed: {EXTRA_HINT}")
    graph = Path(spec.origin).parent / GRAPH
    if not graph.is_file():
        raise ModelLoadError(f"this MediaPipe has no FaceMesh graph at {graph} (releases after 0.10.21 ship no "
                             f"face models): {EXTRA_HINT}")
    return MediaPipeFaceMesh(graph)
