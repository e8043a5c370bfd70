"""Lip features from FaceMesh landmarks: the mouth opening is the inner-lip gap over the mouth width
(landmarks 13-14 over 78-308), and the lip landmarks are normalised to the face (position, size and
roll of the face in the picture drop out)."""

import numpy as np
import pytest

from streamrt.models.faces.landmarks import LIP_LANDMARKS, lip_features
from tests.streamrt.video_helpers import face_points


def test_opening_is_inner_gap_over_mouth_width():
    for opening in (0.0, 0.02, 0.18, 0.5):
        assert lip_features(face_points(opening)).opening == pytest.approx(opening, abs=1e-6)


def test_lip_landmarks_do_not_depend_on_where_the_face_is_or_its_size_or_roll():
    a = lip_features(face_points(0.1))
    b = lip_features(face_points(0.1, scale=37.0, angle=0.4, at=(20.0, 300.0)))
    assert a.lips.shape == (40, 3) and len(LIP_LANDMARKS) == 40
    np.testing.assert_allclose(a.lips[:, :2], b.lips[:, :2], atol=1e-5)
    assert b.opening == pytest.approx(0.1, abs=1e-6)


def test_refuses_what_is_not_a_face_mesh():
    with pytest.raises(ValueError, match=r"\(468, 3\)"):
        lip_features(np.zeros((68, 2)))
