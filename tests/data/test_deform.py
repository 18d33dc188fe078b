"""Per-subject deformations: identity when switched off, bounded, seeded, exact intensity maps."""

from __future__ import annotations

import numpy as np
import pytest

from braingan.data.deform import apply_deformation, sample_deformation

OFF = dict(  # every random component switched off
    max_rotation_deg=0.0,
    scale_range=(1.0, 1.0),
    max_translation_px=0.0,
    elastic_px=(0.0, 0.0),
    gamma_range=(1.0, 1.0),
    gain_range=(1.0, 1.0),
    bias_strength=0.0,
    max_z_shift=0,
)


@pytest.fixture
def blob() -> np.ndarray:
    """[2, 48, 48] float in [0, 1]: a smooth bright disc on an exactly-zero background."""
    y, x = np.mgrid[0:48, 0:48] - 23.5
    disc = np.clip(1.2 - np.hypot(y, x) / 15.0, 0.0, 1.0) * (np.hypot(y, x) < 16)
    return np.stack([disc, 0.5 * disc])


def test_switched_off_is_identity(blob: np.ndarray) -> None:
    deformation = sample_deformation(np.random.default_rng(0), 48, **OFF)
    assert deformation.z_shift == 0
    assert np.allclose(deformation.coords, np.mgrid[0:48, 0:48], atol=1e-4)
    out = apply_deformation(blob, deformation)
    assert out.dtype == np.uint8 and out.shape == (2, 48, 48)
    assert np.array_equal(out, np.rint(blob * 255).astype(np.uint8))


def test_gamma_maps_intensities_exactly(blob: np.ndarray) -> None:
    deformation = sample_deformation(np.random.default_rng(0), 48, **OFF | {"gamma_range": (2, 2)})
    out = apply_deformation(blob, deformation).astype(int)
    assert np.abs(out - np.rint(blob**2 * 255)).max() <= 1


def test_elastic_peak_displacement_is_the_drawn_amplitude() -> None:
    only_elastic = OFF | {"elastic_px": (2.5, 2.5)}
    deformation = sample_deformation(np.random.default_rng(1), 64, **only_elastic)
    displacement = deformation.coords - np.mgrid[0:64, 0:64]  # [2, 64, 64]
    assert np.sqrt((displacement**2).sum(axis=0)).max() == pytest.approx(2.5, abs=1e-4)


def test_default_deformation_is_small_and_seeded() -> None:
    a = sample_deformation(np.random.default_rng(7), 256)
    b = sample_deformation(np.random.default_rng(7), 256)
    c = sample_deformation(np.random.default_rng(8), 256)
    assert np.array_equal(a.coords, b.coords) and a.gamma == b.gamma and a.z_shift == b.z_shift
    assert not np.array_equal(a.coords, c.coords)
    # rotation <= 4 deg, scale within 7 %, shift <= 4 px/axis, elastic <= 3.5 px at the frame
    # corner (181 px from the centre): |displacement| <= 181 * (0.07 + 0.07) + 5.7 + 3.5
    displacement = np.hypot(*(a.coords - np.mgrid[0:256, 0:256]))
    assert displacement.max() < 181 * 0.14 + 5.7 + 3.5
    assert 0.85 <= a.gamma <= 1.15 and 0.92 <= a.gain <= 1.08
    assert np.abs(a.bias - 1).max() <= 0.08 + 1e-6 and abs(a.z_shift) <= 2


def test_background_stays_exactly_zero(blob: np.ndarray) -> None:
    deformation = sample_deformation(np.random.default_rng(3), 48, elastic_sigma_px=6.0)
    out = apply_deformation(blob, deformation)
    assert out[:, :3, :].max() == 0 and out[:, :, :3].max() == 0  # far from the disc
    assert out[0, 24, 24] > 150  # the disc survived the warp
