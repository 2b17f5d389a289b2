"""Image and video quality against ground truth: PSNR, SSIM, temporal warping error.

Frames are RGB uint8 arrays (H, W, 3), the form videos are written and read in.
"""

from __future__ import annotations

import cv2
import numpy as np

from vid2vid.data.teacher_flow import dis_flow, sample


def psnr(result: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels (peak 255); inf for equal images."""
    mse = np.mean((result.astype(np.float64) - truth.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(result: np.ndarray, truth: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, on each
    channel, averaged over pixels and channels."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = result.astype(np.float64), truth.astype(np.float64)

    def blur(image):
        return cv2.GaussianBlur(image, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    score = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(score.mean())


def warping_error(results: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Flicker: mean |result_t - result_{t-1} warped by the ground truth's flow| over pixels where that flow
    is confident (OpenCV DIS between consecutive ground-truth frames, forward-backward checked), in
    intensity levels of 255. Lower is steadier; the ground truth itself scores near zero."""
    errors, weights = 0.0, 0.0
    for t in range(1, len(results)):
        flow, confidence = dis_flow(truths[t], truths[t - 1])
        warped = sample(results[t - 1].astype(np.float32), flow)
        difference = np.abs(results[t].astype(np.float32) - warped).mean(axis=2)
        errors += float((difference * confidence).sum())
        weights += float(confidence.sum())
    return errors / weights if weights else 0.0
