"""The official StyleGAN2 figures `make bench` prints beside its own (sources: docs/anchors.md)."""

from __future__ import annotations

# Official NVlabs StyleGAN2 (stylegan3 repository, --cfg=stylegan2, custom CUDA kernels, FP16 in the
# 4 highest resolutions with conv clamping, --metrics=none), 1 NVIDIA H100 80GB, 256x256 grayscale
# (docs/anchors.md). Matched on the architecture, the batch and ADA on/off.
REFERENCE_SOURCE = (
    "official StyleGAN2-ADA (NVlabs stylegan3 --cfg=stylegan2, custom CUDA kernels, FP16 in the 4 highest "
    "resolutions with conv clamping), NVIDIA H100 80GB"
)
REFERENCES = [
    {
        "channel_base": 32768,
        "channel_max": 512,
        "mapping_layers": 8,
        "batch_size": 32,
        "ada": True,
        "sec_per_kimg": 11.6,
        "img_per_s": 86.0,
        "peak_mem_gb": 13.6,
    },
    {
        "channel_base": 32768,
        "channel_max": 512,
        "mapping_layers": 8,
        "batch_size": 32,
        "ada": False,
        "sec_per_kimg": 11.4,
        "img_per_s": 88.0,
        "peak_mem_gb": 13.5,
    },
    {
        "channel_base": 16384,
        "channel_max": 512,
        "mapping_layers": 2,
        "batch_size": 64,
        "ada": True,
        "sec_per_kimg": 6.0,
        "img_per_s": 167.0,
        "peak_mem_gb": 17.1,
    },
]


def reference_for(config: dict, cuda: bool) -> dict | None:
    """The official figures for this configuration (256x256 grayscale, paper/base width, batch 32/64, GPU)."""
    if not cuda or config["resolution"] != 256 or config["img_channels"] != 1:
        return None
    keys = ("channel_base", "channel_max", "mapping_layers", "batch_size")
    found = [r for r in REFERENCES if all(r[k] == config[k] for k in keys)]
    ada = config["augment"] != "none"
    found.sort(key=lambda r: r["ada"] != ada)  # the same ADA setting first
    if not found:
        return None
    return {"source": REFERENCE_SOURCE, **found[0]}
