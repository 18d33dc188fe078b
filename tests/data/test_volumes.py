"""Volumes to slices: finding and loading NIfTI/Analyze files, RAS reorientation, percentile
normalisation, slice selection, display orientation and canvas; expected values computed here."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from braingan.data.layouts import DatasetError
from braingan.data.volumes import (
    axial_slice,
    brain_fractions,
    find_volumes,
    fit_canvas,
    foreground_mask,
    load_volume,
    normalize,
    select_slices,
    volume_slices,
)

SHAPE = (40, 48, 36)  # [X, Y, Z] voxels of the phantom in RAS+: x -> right, y -> anterior, z -> up
MARKER = (slice(28, 30), slice(38, 40), slice(16, 20))  # right, anterior, mid-height


def phantom() -> np.ndarray:
    """An ellipsoid 'brain' [X, Y, Z] (RAS+) brightening upward, in a zero background, with a
    small bright marker in its right-anterior part (16 voxels, fewer than 0.5% of the brain)."""
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in SHAPE), indexing="ij")
    inside = ((x - 19.5) / 16) ** 2 + ((y - 23.5) / 20) ** 2 + ((z - 17.5) / 14) ** 2 <= 1
    volume = np.where(inside, 100 + 2 * z, 0).astype(np.float32)
    volume[MARKER] = 1000
    return volume


def save(image: nib.spatialimages.SpatialImage, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def test_reorientation_to_ras_from_flipped_and_permuted_storage(tmp_path: Path) -> None:
    volume = phantom()
    ras = save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "ras.nii")
    # LPS storage: voxel (i, j) runs left/posterior, so the array is flipped in x and y.
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps_affine[:3, 3] = [SHAPE[0] - 1, SHAPE[1] - 1, 0]
    lps = save(nib.Nifti1Image(volume[::-1, ::-1].copy(), lps_affine), tmp_path / "lps.nii.gz")
    # Axes stored in the order [Z, X, Y]: voxel (i, j, k) lies at world (x=j, y=k, z=i).
    permuted_affine = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    permuted = save(nib.Nifti1Image(volume.transpose(2, 0, 1).copy(), permuted_affine), tmp_path / "sra.nii")
    for path in (ras, lps, permuted):
        loaded = load_volume(path)
        assert loaded.dtype == np.float32 and loaded.shape == SHAPE
        np.testing.assert_array_equal(loaded, volume)


def test_analyze_pair_with_singleton_4th_axis_is_read_as_radiological(tmp_path: Path) -> None:
    volume = phantom()
    # Analyze headers store no orientation: nibabel reads them as LAS, so store x flipped.
    stored = volume[::-1, :, :, None].copy()  # [X, Y, Z, 1] like OASIS-1
    img = save(nib.AnalyzeImage(stored, np.diag([-1.0, 1, 1, 1])), tmp_path / "OAS1_0001.img")
    assert (tmp_path / "OAS1_0001.hdr").is_file()
    np.testing.assert_array_equal(load_volume(img), volume)
    np.testing.assert_array_equal(load_volume(tmp_path / "OAS1_0001.hdr"), volume)
    # Data that is really stored RAS needs the override.
    np.testing.assert_array_equal(load_volume(img, orientation="LAS"), volume)
    np.testing.assert_array_equal(load_volume(img, orientation="RAS"), volume[::-1])


def test_true_4d_series_and_bad_orientation_are_refused(tmp_path: Path) -> None:
    series = save(nib.Nifti1Image(np.zeros((4, 5, 6, 3), np.float32), np.eye(4)), tmp_path / "f.nii")
    with pytest.raises(DatasetError, match=r"shape \(4, 5, 6, 3\).*4-D series"):
        load_volume(series)
    flat = save(nib.Nifti1Image(np.ones((4, 5, 6), np.float32), np.eye(4)), tmp_path / "g.nii")
    for codes in ("LAX", "LA", "LLS"):
        with pytest.raises(DatasetError, match=f"orientation={codes} is not 3 axis codes"):
            load_volume(flat, orientation=codes)
    (tmp_path / "broken.nii").write_bytes(b"not a volume")
    with pytest.raises(DatasetError, match="could not read volume .*broken.nii"):
        load_volume(tmp_path / "broken.nii")


def test_find_volumes_lists_each_analyze_pair_once(tmp_path: Path) -> None:
    small = np.ones((2, 2, 2), np.float32)
    save(nib.AnalyzeImage(small, np.eye(4)), tmp_path / "b" / "OAS1_0010_MR1.img")
    save(nib.Nifti1Image(small, np.eye(4)), tmp_path / "b" / "s2.nii")
    save(nib.Nifti1Image(small, np.eye(4)), tmp_path / "a" / "s10.NII.GZ")
    save(nib.Nifti1Image(small, np.eye(4)), tmp_path / "a" / "s9.nii.gz")
    save(nib.Nifti1Image(small, np.eye(4)), tmp_path / ".hidden" / "s1.nii")
    save(nib.Nifti1Image(small, np.eye(4)), tmp_path / "a" / "._s3.nii")
    (tmp_path / "a" / "notes.txt").write_text("not a volume")
    expected = ["a/s9.nii.gz", "a/s10.NII.GZ", "b/OAS1_0010_MR1.img", "b/s2.nii"]
    for patterns in (["*.nii", "*.nii.gz", "*.img"], ["*.nii", "*.nii.gz", "*.img", "*.hdr"]):
        found = find_volumes(tmp_path, patterns)
        assert [p.relative_to(tmp_path).as_posix() for p in found] == expected
    only_headers = find_volumes(tmp_path, ["*.hdr"])
    assert only_headers == [tmp_path / "b" / "OAS1_0010_MR1.img"]


def test_normalize_windows_the_foreground_percentiles() -> None:
    volume = phantom()
    mask = foreground_mask(volume)
    np.testing.assert_array_equal(mask, volume != 0)
    pixels = normalize(volume, mask, (0.5, 99.5))
    brain = volume[volume != 0]
    lo, hi = np.percentile(brain, 0.5), np.percentile(brain, 99.5)
    assert hi < 1000  # the marker is clipped, not the top of the window
    expected = np.rint(np.clip((volume - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    expected[volume == 0] = 0
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, expected)
    assert pixels[MARKER].min() == 255 and pixels.max() == 255
    assert pixels[volume == 0].max() == 0
    # A scale change of the scanner does not change the result.
    np.testing.assert_array_equal(normalize(7.5 * volume, mask, (0.5, 99.5)), pixels)
    # Signed data (the window starts below 0): the background still stays 0.
    signed = np.where(volume != 0, volume - 130.5, 0).astype(np.float32)
    assert np.percentile(signed[signed != 0], 0.5) < 0
    assert normalize(signed, signed != 0)[volume == 0].max() == 0
    with pytest.raises(DatasetError, match="percentiles"):
        normalize(volume, mask, (50, 10))


def test_foreground_threshold_ignores_a_noisy_background() -> None:
    volume = phantom()
    noisy = volume + np.random.default_rng(0).uniform(1, 5, SHAPE).astype(np.float32)
    assert foreground_mask(noisy).all()  # every voxel is nonzero
    np.testing.assert_array_equal(foreground_mask(noisy, threshold=0.2), volume != 0)
    pixels = normalize(noisy, foreground_mask(noisy, threshold=0.2))
    assert pixels[volume == 0].max() == 0 and pixels.max() == 255


def test_select_slices_by_range_fraction_and_brain_content() -> None:
    mask = phantom() != 0
    fractions = brain_fractions(mask)
    expected = np.array([mask[:, :, z].sum() / (SHAPE[0] * SHAPE[1]) for z in range(SHAPE[2])])
    np.testing.assert_allclose(fractions, expected)
    np.testing.assert_array_equal(select_slices(fractions, [10, 14]), [10, 11, 12, 13])
    np.testing.assert_array_equal(select_slices(fractions, [30, 99]), [30, 31, 32, 33, 34, 35])
    np.testing.assert_array_equal(select_slices(fractions, [0.25, 0.5]), np.arange(9, 18))
    np.testing.assert_array_equal(select_slices(fractions, [None, 3]), [0, 1, 2])
    np.testing.assert_array_equal(select_slices(fractions, [30, None], step=2), [30, 32, 34])
    np.testing.assert_array_equal(select_slices(fractions), np.arange(SHAPE[2]))
    by_content = select_slices(fractions, min_brain_fraction=0.3)
    np.testing.assert_array_equal(by_content, np.nonzero(expected >= 0.3)[0])
    assert 0 < len(by_content) < SHAPE[2] - 10  # the threshold really drops slices
    both = select_slices(fractions, [0, 18], min_brain_fraction=0.3)
    np.testing.assert_array_equal(both, by_content[by_content < 18])
    for bad in ([5, 5], [-1, 4], [0.5, 0.2], [0.2, 1.5], [1, 2, 3], ["a", 3]):
        with pytest.raises(DatasetError, match="slice_range"):
            select_slices(fractions, bad)
    with pytest.raises(DatasetError, match="min_brain_fraction"):
        select_slices(fractions, min_brain_fraction=2)


def test_axial_slice_shows_anterior_at_the_top_and_right_on_the_left() -> None:
    volume = phantom()
    image = axial_slice(volume, 17)  # [Y, X] as displayed
    assert image.shape == (SHAPE[1], SHAPE[0])
    rows, cols = np.nonzero(image == 1000)
    assert rows.max() < SHAPE[1] // 4  # the anterior marker is at the top
    assert cols.max() < SHAPE[0] // 2  # the patient's right is on the image's left
    assert image[SHAPE[1] - 1 - 38, SHAPE[0] - 1 - 28] == 1000  # exact voxel mapping


def test_fit_canvas_centers_with_pad_and_crop() -> None:
    image = np.arange(1, 5 * 6 + 1, dtype=np.uint8).reshape(5, 6)  # [H=5, W=6]
    assert fit_canvas(image, None) is image
    padded = fit_canvas(image, [10, 9])  # [width, height]
    assert padded.shape == (9, 10)
    np.testing.assert_array_equal(padded[2:7, 2:8], image)
    assert padded.sum() == image.sum()
    cropped = fit_canvas(image, [2, 3])
    np.testing.assert_array_equal(cropped, image[1:4, 2:4])
    mixed = fit_canvas(image, [4, 7])  # crop the width, pad the height
    np.testing.assert_array_equal(mixed[1:6], image[:, 1:5])
    with pytest.raises(DatasetError, match="canvas"):
        fit_canvas(image, [0, 4])


def test_volume_slices_combines_the_steps() -> None:
    volume = phantom()
    slices = volume_slices(volume, min_brain_fraction=0.3, canvas=[64, 56])
    expected = np.nonzero(brain_fractions(volume != 0) >= 0.3)[0]
    assert list(slices) == list(expected)
    for image in slices.values():
        assert image.shape == (56, 64) and image.dtype == np.uint8
        assert image[:4].max() == 0 and image[:, :12].max() == 0  # the padding is black
    assert slices[17].max() == 255
    assert volume_slices(np.zeros(SHAPE, np.float32)) == {}
