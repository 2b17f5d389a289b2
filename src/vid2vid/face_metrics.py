"""How well a rendered face follows its driver and keeps its reference's identity, where no ground truth exists (a new
face driven by someone else's video), measured as face reenactment papers measure it:

- found: MediaPipe (the detector `prepare` uses) finds a face on the frame;
- landmark error: the mean distance of the landmarks found on a frame from the landmarks it was driven with, in
  inter-ocular distances of the latter (outer eye corners): the average keypoint distance (AKD) of FOMM and
  LivePortrait, normalised. Its floor is the detector's own: the same error of the driving frames themselves,
  resized to the output's size, against their landmarks found at full size (`redetection`);
- mouth opening: the inner lips' gap (points 62 to 66) in inter-ocular distances, frame by frame, and its Pearson
  correlation with the driver's over the video;
- identity: dlib's face-recognition network (the 128-d descriptor `face-recognition-models` bundles; its authors
  call two faces one person below a distance of 0.6): per output frame, the distance to the reference photo's face
  and to the driving frame's face.

Small frames are enlarged before detection (`upscale`): both detectors were made for faces larger than 64 pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from vid2vid.data.keypoints import FaceExtractor, MissingExtra, _dlib_models, inter_ocular

MOUTH_TOP, MOUTH_BOTTOM = 62, 66  # dlib-68: the inner lips' middle points


def enlarge(image: np.ndarray, upscale: int) -> np.ndarray:
    return image if upscale == 1 else cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)


class FaceFinder:
    """MediaPipe's face landmarks (dlib-68 layout) of a possibly small frame, in that frame's pixels, or None."""

    def __init__(self, upscale: int = 4):
        self.upscale = upscale
        self._extractor = FaceExtractor(tracking=False)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        found = self._extractor(enlarge(np.ascontiguousarray(image), self.upscale))
        # Pixel centres: x_big = (x + 0.5) * upscale - 0.5.
        return None if found is None else (found.astype(np.float64) + 0.5) / self.upscale - 0.5

    def close(self) -> None:
        self._extractor.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def landmark_error(found: np.ndarray, target: np.ndarray) -> float:
    """Mean point distance of found from target landmarks (68, 2), in target inter-ocular distances."""
    target = np.asarray(target, np.float64)
    return float(np.linalg.norm(np.asarray(found, np.float64) - target, axis=-1).mean() / inter_ocular(target))


def mouth_opening(points: np.ndarray) -> float:
    """The inner lips' gap in inter-ocular distances."""
    points = np.asarray(points, np.float64)
    return float(np.linalg.norm(points[MOUTH_BOTTOM] - points[MOUTH_TOP]) / inter_ocular(points))


def correlation(a: list[float], b: list[float]) -> float:
    """Pearson's r of two series (nan where either is constant or shorter than 3)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


class FaceIdentity:
    """dlib's 128-d face descriptor of the largest face on an image (HOG detector, its 5-point alignment), or None
    where dlib finds no face."""

    def __init__(self, upscale: int = 1):
        try:
            import dlib
        except ImportError:
            raise MissingExtra("the identity score needs the dlib extra: pip install 'vid2vid[dlib]'") from None
        models = _dlib_models()
        self._detect = dlib.get_frontal_face_detector()
        self._align = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._describe = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self.upscale = upscale

    def __call__(self, image: np.ndarray, upscale: int | None = None) -> np.ndarray | None:
        image = np.ascontiguousarray(enlarge(image, self.upscale if upscale is None else upscale))
        faces = self._detect(image, 1)
        if not faces:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        return np.asarray(self._describe.compute_face_descriptor(image, self._align(image, face)), np.float64)


def identity_summary(outputs: list[np.ndarray | None], reference: np.ndarray, drivers: list[np.ndarray | None]
                     ) -> dict:
    """Descriptors of the output frames and of their driving frames (None where dlib found no face) against the
    reference's: the share of output frames closer to the reference than to their driving frame (a frame where
    either face is not found counts as not closer), and the mean distances over the frames with both."""
    pairs = [(o, d) for o, d in zip(outputs, drivers, strict=True) if o is not None and d is not None]
    to_reference = [float(np.linalg.norm(o - reference)) for o, _ in pairs]
    to_driver = [float(np.linalg.norm(o - d)) for o, d in pairs]
    closer = sum(r < d for r, d in zip(to_reference, to_driver, strict=True))
    return {"frames": len(outputs), "frames_with_both_faces": len(pairs),
            "closer_to_reference": closer / len(outputs) if outputs else float("nan"),
            "distance_to_reference": float(np.mean(to_reference)) if pairs else float("nan"),
            "distance_to_driver": float(np.mean(to_driver)) if pairs else float("nan"),
            "reference_to_driver": float(np.mean([np.linalg.norm(reference - d) for d in drivers if d is not None]))
            if any(d is not None for d in drivers) else float("nan")}
