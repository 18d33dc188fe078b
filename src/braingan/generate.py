"""Entry point: `python -m braingan.generate [ckpt=...] [overrides]` (what `make generate` runs).

Rebuilds G_ema from a training checkpoint alone (no training config needed), or from a `make export`
folder (ckpt=<folder>: braingan.export, no pickles), and writes into `out` (default: <run>/generate/,
the run folder being the checkpoint's checkpoints/ parent; <folder>/generate/ of an export):

    images/[<class>/]seed<NNNN>.png   what=images     one PNG per seed, the data's native size
    grid[_<class>].png                what=grid       the first n x n seeds
    interp[_<class>].png, .gif, .mp4  what=interp     latent walk between keyframe seeds
    mixing[_<class>].png              what=mixing     style mixing: sources x destinations
    embedding_{pca,umap}.png          what=embedding  w of many z, 2-D, coloured by class,
    embedding.npz, projector/                         + arrays and TensorBoard projector files;
                                                      embedding.projected=<make project folder>
                                                      adds the projected real slices (triangles)

Image files are grayscale (RGB for 3-channel models) PNGs at the native size of the training
data (`Geometry.to_native`: ADNI 256 x 240), or the model square for checkpoints without one.
z of seed s is `np.random.RandomState(s).randn(z_dim)` (the convention of the official tools)
and the noise is the generator's fixed noise (noise_mode=const), so the same seeds give the same
files. Conditional models render the class picked by class_name / class_index, or every class
in turn when neither is set; unconditional models refuse a class. Hydra composes
conf/generate.yaml; `main` hands the values to the plain function `generate`.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from . import cli
from .checkpoint import load_generator, read_info
from .confdir import CONF_DIR
from .data.fit import Geometry
from .experiment.projection import read_projected
from .experiment.resume import resolve_source
from .export import load_export
from .nn.synthesis import Generator
from .reporting.figures import scatter_embedding
from .rundir import RunDir
from .utils.animation import interpolation_path, mp4_writer_available, save_gif, save_mp4
from .utils.device import resolve_device
from .utils.errors import UsageError
from .utils.images import save_image, to_uint8

log = logging.getLogger(__name__)

MODES = ("images", "grid", "interp", "mixing", "embedding")


@dataclass
class GridOptions:
    size: int = 4  # n: an n x n grid of the first n^2 seeds (then seeds after the last)


@dataclass
class InterpOptions:
    seeds: list = field(default_factory=lambda: [0, 1, 2, 3])  # keyframe seeds, 2 or more
    steps: int = 8  # frames per segment (its start included, its end not)
    method: str = "linear"  # linear | slerp
    space: str = "w"  # w (after mapping and truncation) | z
    loop: bool = True  # the last keyframe walks back to the first
    fps: float = 12.0  # frames per second of the animation
    mp4: bool = False  # also write an MP4 (needs opencv-python)


@dataclass
class MixingOptions:
    sources: list = field(default_factory=lambda: [10, 11, 12])  # row seeds: styles copied from
    destinations: list = field(default_factory=lambda: [0, 1, 2, 3, 4])  # column seeds: styles copied into
    ranges: dict = field(default_factory=lambda: {"coarse": [4, 8], "middle": [16, 32], "fine": [64, 1024]})
    # name -> [lo, hi] layer resolutions in pixels, inclusive


@dataclass
class EmbeddingOptions:
    samples: int = 500  # z per class
    seed: int = 0  # seeds those z
    methods: list = field(default_factory=lambda: ["pca", "umap"])  # umap only when umap-learn is importable
    projector: bool = True  # TensorBoard projector files in <out>/projector/
    projected: str | None = None  # a `make project` output folder: its real slices' w join the plot


def parse_seeds(value) -> list[int]:
    """`0-63` (inclusive) | `[0, 1, 2]` | `[0-7, 12]` | `5` | `'0-7,12'` -> seeds in order, no repeats."""
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else str(value).split(",")
    seeds: list[int] = []
    for item in items:
        text = str(item).strip()
        span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", text)
        if span and int(span[1]) <= int(span[2]):
            seeds.extend(range(int(span[1]), int(span[2]) + 1))
        elif re.fullmatch(r"\d+", text):
            seeds.append(int(text))
        else:
            raise UsageError(f"seeds={value}: '{text}' is not a seed (0 <= s < 2^32) or an increasing range like 0-63")
    if not seeds or max(seeds) >= 2**32:
        raise UsageError(f"seeds={value}: need at least one seed, each below 2^32")
    return list(dict.fromkeys(seeds))


def pick_classes(G: Generator, class_names: list[str], class_name, class_index) -> list[tuple[int | None, str]]:
    """[(label, name)] to render: one class, every class (neither set), or [(None, '')] if unconditional."""
    if G.c_dim == 0:
        if class_name is not None or class_index is not None:
            trained = f" (trained on the single class {class_names[0]})" if class_names else ""
            raise UsageError(f"this model is unconditional{trained}; leave class_name and class_index unset")
        return [(None, "")]
    names = class_names if len(class_names) == G.c_dim else [f"class{k}" for k in range(G.c_dim)]
    listing = ", ".join(f"{k}={n}" for k, n in enumerate(names))
    label = None
    if class_name is not None:
        if str(class_name) not in names:
            raise UsageError(f"class_name={class_name} is not a class of this model; its classes are {listing}")
        label = names.index(str(class_name))
    if class_index is not None:
        index = int(class_index) if re.fullmatch(r"\d+", str(class_index)) else -1
        if not 0 <= index < G.c_dim or (label is not None and label != index):
            raise UsageError(f"class_index={class_index} does not fit this model's classes: {listing}")
        label = index
    return [(k, names[k]) for k in range(G.c_dim)] if label is None else [(label, names[label])]


class Renderer:
    """Seeds -> z -> ws -> native-size uint8 images, in batches, with truncation and fixed noise."""

    def __init__(
        self,
        G: Generator,  # the generator (eval mode, on `device`)
        geometry: Geometry | None,  # native size of the data; None = keep the model square
        psi: float = 1.0,  # truncation psi (1 = none), toward the class's w average
        truncation_cutoff: int | None = None,  # truncate only the first N ws; None = all
        noise_mode: str = "const",  # const (fixed, deterministic) | random | none
        batch: int = 16,  # images per forward pass
        progress: bool = True,  # tqdm bars for long renders
    ):
        self.G, self.geometry, self.psi, self.cutoff = G, geometry, psi, truncation_cutoff
        self.noise_mode, self.batch, self.progress = noise_mode, max(int(batch), 1), progress
        self.device = next(G.parameters()).device

    def z(self, seeds: Sequence[int]) -> torch.Tensor:  # [N, z_dim]
        z = np.stack([np.random.RandomState(s).randn(self.G.z_dim) for s in seeds])
        return torch.from_numpy(z).float().to(self.device)

    def c(self, label: int | None, n: int) -> torch.Tensor | None:  # [N, c_dim] one-hot or None
        if label is None:
            return None
        return torch.nn.functional.one_hot(torch.full([n], label, device=self.device), self.G.c_dim).float()

    @torch.no_grad()
    def ws(self, z: torch.Tensor, label: int | None) -> torch.Tensor:  # [N, z_dim] -> [N, num_ws, w_dim]
        return self.G.mapping(z, self.c(label, len(z)), truncation_psi=self.psi, truncation_cutoff=self.cutoff)

    @torch.no_grad()
    def images(
        self, ws: torch.Tensor, desc: str | None = None
    ) -> np.ndarray:  # [N, num_ws, w_dim] -> uint8 [N, H, W, C]
        out: list[torch.Tensor] = []
        bar = tqdm(
            total=len(ws), desc=desc, unit="img", disable=not self.progress or desc is None or len(ws) <= self.batch
        )
        for i in range(0, len(ws), self.batch):
            img = to_uint8(self.G.synthesis(ws[i : i + self.batch], noise_mode=self.noise_mode)).cpu()  # [n, C, R, R]
            out.append(cast(torch.Tensor, self.geometry.to_native(img)) if self.geometry is not None else img)
            bar.update(len(img))
        bar.close()
        return torch.cat(out).permute(0, 2, 3, 1).numpy()

    def seeds(
        self, seeds: Sequence[int], label: int | None, desc: str | None = None
    ) -> np.ndarray:  # uint8 [N, H, W, C]
        return self.images(self.ws(self.z(seeds), label), desc)


def tile(images: np.ndarray, rows: int) -> np.ndarray:  # uint8 [N, H, W, C] -> [rows * H, cols * W, C], row-major
    n, h, w, c = images.shape
    cols = -(-n // rows)
    canvas = np.zeros((rows * cols, h, w, c), dtype=np.uint8)
    canvas[:n] = images
    return canvas.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def write_images(r: Renderer, out: Path, seeds: list[int], label: int | None, name: str) -> None:
    """One PNG per seed, written batch by batch (any number of seeds fits in memory)."""
    folder = out / "images" / name if name else out / "images"
    bar = tqdm(
        total=len(seeds), desc=f"images {name}".strip(), unit="img", disable=not r.progress or len(seeds) <= r.batch
    )
    for i in range(0, len(seeds), r.batch):
        chunk = seeds[i : i + r.batch]
        for seed, image in zip(chunk, r.seeds(chunk, label)):
            save_image(image, folder / f"seed{seed:04d}.png")
        bar.update(len(chunk))
    bar.close()
    log.info("wrote %d images to %s", len(seeds), folder)


def write_grid(r: Renderer, out: Path, seeds: list[int], label: int | None, tag: str, opt: GridOptions) -> None:
    n = int(opt.size)
    if n < 1:
        raise UsageError(f"grid.size={opt.size} must be at least 1")
    chosen = (seeds + list(range(max(seeds) + 1, max(seeds) + 1 + n * n)))[: n * n]
    save_image(tile(r.seeds(chosen, label), n), out / f"grid{tag}.png")
    log.info("wrote %s: seeds %s", out / f"grid{tag}.png", ", ".join(map(str, chosen)))


def write_interp(r: Renderer, out: Path, label: int | None, tag: str, opt: InterpOptions) -> None:
    if opt.space not in ("w", "z"):
        raise UsageError(f"interp.space={opt.space} must be w or z")
    if opt.mp4 and not mp4_writer_available():
        raise UsageError("interp.mp4=true needs an MP4 writer (pip install opencv-python); or set interp.mp4=false")
    keys = r.z(parse_seeds(opt.seeds))  # [K, z_dim]
    if opt.space == "w":
        keys = r.ws(keys, label)  # [K, num_ws, w_dim]
    try:
        path = interpolation_path(keys, int(opt.steps), opt.method, bool(opt.loop))  # [S, steps + 1, ...]
    except ValueError as error:
        raise UsageError(f"interp: {error}") from None
    flat = path.flatten(0, 1)
    images = r.images(flat if opt.space == "w" else r.ws(flat, label), desc="interpolation")
    images = images.reshape(*path.shape[:2], *images.shape[1:])  # [S, steps + 1, H, W, C]
    save_image(tile(images.reshape(-1, *images.shape[2:]), len(images)), out / f"interp{tag}.png")
    frames = images[:, :-1].reshape(-1, *images.shape[2:])
    if not opt.loop:
        frames = np.concatenate([frames, images[-1, -1:]])
    save_gif(frames, out / f"interp{tag}.gif", fps=opt.fps)
    if opt.mp4:
        save_mp4(frames, out / f"interp{tag}.mp4", fps=opt.fps)
    log.info("wrote %s (%d x %d) and a %d-frame animation", out / f"interp{tag}.png", *path.shape[:2], len(frames))


def layer_resolution(index: int, img_resolution: int) -> int:
    """Resolution of the layers that ws[index] styles (two per resolution, as in the official tools)."""
    return min(2 ** (2 + index // 2), img_resolution)


def write_mixing(r: Renderer, out: Path, label: int | None, tag: str, opt: MixingOptions) -> None:
    """Top row: destinations; then per range, one row per source: the source, then each destination
    with the source's ws in that range of layer resolutions (StyleGAN, figure 3)."""
    sources, destinations = parse_seeds(opt.sources), parse_seeds(opt.destinations)
    ws_src, ws_dst = r.ws(r.z(sources), label), r.ws(r.z(destinations), label)  # [S | D, num_ws, w_dim]
    rows, used = [], []
    for name, bounds in dict(opt.ranges).items():
        if not (isinstance(bounds, Sequence) and len(bounds) == 2 and all(isinstance(b, int) for b in bounds)):
            raise UsageError(f"mixing.ranges.{name}={bounds} must be [lo, hi], layer resolutions in pixels")
        lo, hi = bounds
        idx = [i for i in range(r.G.num_ws) if lo <= layer_resolution(i, r.G.img_resolution) <= hi]
        if not idx:
            log.warning(
                "mixing range %s (%s-%s px) has no layers in a %d px model; skipped", name, lo, hi, r.G.img_resolution
            )
            continue
        used.append(f"{name} {lo}-{hi} px (ws {idx[0]}-{idx[-1]})")
        for s in range(len(sources)):
            mixed = ws_dst.clone()
            mixed[:, idx] = ws_src[s, idx]
            rows.append(torch.cat([ws_src[s : s + 1], mixed]))
    if not rows:
        raise UsageError(f"mixing.ranges={dict(opt.ranges)} select no layers of this {r.G.img_resolution} px model")
    images = r.images(torch.cat([ws_dst[:1], ws_dst, *rows]), desc="style mixing")
    images[0] = 0  # the empty corner
    save_image(tile(images, 1 + len(rows)), out / f"mixing{tag}.png")
    log.info("wrote %s: rows of sources %s per range: %s", out / f"mixing{tag}.png", sources, "; ".join(used))


def pca_2d(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N, D] -> (points [N, 2], explained variance ratio [2], the mean and components [3, D])."""
    x = x.double()
    mean = x.mean(dim=0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    pcs = vh[:2] * torch.sign(vh[:2].gather(1, vh[:2].abs().argmax(dim=1, keepdim=True)))  # deterministic signs
    ratio = (s[:2] ** 2 / (s**2).sum()).numpy()
    return ((x - mean) @ pcs.T).numpy(), ratio, torch.cat([mean[None], pcs]).numpy()


def in_pca(x: torch.Tensor, basis: np.ndarray) -> np.ndarray:
    """[M, D] float64 -> [M, 2]: points in the plane of pca_2d's basis (its mean and components [3, D])."""
    return ((x - torch.from_numpy(basis[0])) @ torch.from_numpy(basis[1:]).T).numpy()


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def write_embedding(
    r: Renderer,
    out: Path,
    classes: list[tuple[int | None, str]],
    opt: EmbeddingOptions,
    ckpt: Path | None = None,  # the checkpoint of r.G: projected latents must come from it
) -> None:
    n = int(opt.samples)
    if n < 2:
        raise UsageError(f"embedding.samples={opt.samples} must be at least 2")
    rng = np.random.RandomState(int(opt.seed))
    ws: list[torch.Tensor] = []
    label_list: list[int] = []
    for label, _ in classes:
        z = torch.from_numpy(rng.randn(n, r.G.z_dim)).float().to(r.device)
        ws.append(torch.cat([r.ws(z[i : i + 1024], label)[:, 0] for i in range(0, n, 1024)]).cpu())  # [n, w_dim]
        label_list += [label or 0] * n
    w, labels = torch.cat(ws), np.asarray(label_list)
    names = [name or "all" for _, name in classes]
    order = [label or 0 for label, _ in classes]
    codes = np.asarray([order.index(k) for k in labels])  # index into names
    points, ratio, basis = pca_2d(w)
    centers = None
    if r.G.c_dim > 0:  # each class's tracked w average, projected the same way
        avg = r.G.mapping.w_avg_class[order].cpu().double()
        centers = in_pca(avg, basis)
    arrays: dict[str, Any] = {
        "w": w.numpy(),
        "labels": labels,
        "class_names": np.asarray(names),
        "pca": points,
        "pca_basis": basis,
    }
    real = None
    if opt.projected:  # real slices' w, in the generated samples' PCA basis
        real_w, real_labels, real_images = read_projected(opt.projected, ckpt)
        if real_w.shape[1] != w.shape[1]:
            raise UsageError(
                f"embedding.projected={opt.projected}: its w are {real_w.shape[1]}-d, this model's {w.shape[1]}-d"
            )
        keep = np.asarray([max(k, 0) in order for k in real_labels])
        if not keep.all():
            log.info("embedding: %d projected slices of classes not rendered here are left out", int((~keep).sum()))
        real_w, real_labels = real_w[torch.from_numpy(keep)], real_labels[keep]
        real_codes = np.asarray([order.index(max(k, 0)) for k in real_labels], dtype=int)
        real_points = in_pca(real_w, basis)
        arrays.update(
            projected_w=real_w.numpy(),
            projected_labels=real_labels,
            projected_images=np.asarray(real_images)[keep],
            projected_pca=real_points,
        )
        real = (real_points, real_codes)
    axes = [f"PC{k + 1} ({100 * v:.1f}% of variance)" for k, v in enumerate(ratio)]
    scatter_embedding(points, codes, names, out / "embedding_pca.png", "w, PCA", axes, centers, real=real)
    if "umap" in opt.methods and not umap_available():
        log.info("umap-learn is not installed: PCA only (pip install umap-learn for a UMAP plot)")
    elif "umap" in opt.methods:
        import umap

        both = w.numpy() if real is None else np.concatenate([w.numpy(), arrays["projected_w"]])
        fitted = umap.UMAP(n_components=2, random_state=int(opt.seed)).fit_transform(both)
        arrays["umap"] = fitted[: len(w)]
        if real is not None:
            arrays["projected_umap"] = fitted[len(w) :]
        scatter_embedding(
            arrays["umap"],
            codes,
            names,
            out / "embedding_umap.png",
            "w, UMAP",
            ["UMAP 1", "UMAP 2"],
            real=None if real is None else (arrays["projected_umap"], real[1]),
        )
    np.savez(out / "embedding.npz", **arrays)
    if opt.projector:
        from torch.utils.tensorboard import SummaryWriter

        shutil.rmtree(out / "projector", ignore_errors=True)
        with SummaryWriter(log_dir=str(out / "projector")) as writer:
            writer.add_embedding(w, metadata=[names[k] for k in codes], tag="w")
    log.info("wrote the embedding of %d w per class (%s) to %s", n, ", ".join(names), out)


def default_out(ckpt: Path) -> Path:
    """<run>/generate of the checkpoint's run (<run>/checkpoints/x.ckpt), or generate/ beside a loose file;
    <folder>/generate of an export folder."""
    if ckpt.is_dir():
        return RunDir(ckpt).generate
    return RunDir.of_checkpoint(ckpt).generate


def load_source(
    ckpt: str | Path | None, which: str = "G_ema"
) -> tuple[Generator, Path, list[str], Geometry | None, Path | None]:
    """The generator of a checkpoint file or of a `make export` folder (eval mode, on the CPU), the file or
    folder, the class names, the native geometry, and the checkpoint the weights come from (which
    projected latents must have been made with; an export's is the one it was exported from)."""
    path = resolve_source(ckpt)
    if path.is_dir():
        if which != "G_ema":
            raise UsageError(f"which={which}: an export folder holds G_ema only; leave which unset")
        G, exported = load_export(path)
        return G, exported.folder, exported.class_names, exported.geometry, exported.checkpoint
    info = read_info(path)  # classes and native size; names a file that is not a checkpoint before unpickling it
    return load_generator(path, which), path, info.class_names, info.geometry, path


def generate(
    ckpt: str | Path | None = "last",  # checkpoint file or `make export` folder; 'last' = newest last.ckpt
    out: str | Path | None = None,  # output folder; None = <run>/generate
    what: Sequence[str] = MODES,  # any of images, grid, interp, mixing, embedding
    seeds="0-15",  # seeds of images (and grid): 0-63, [0,1,2], [0-7,12]
    psi: float = 1.0,  # truncation psi; 1 = none
    truncation_cutoff: int | None = None,  # truncate only the first N ws; None = all
    class_name: str | None = None,  # conditional models: the class to render; None = every class
    class_index: int | None = None,  # the same, by label index
    noise_mode: str = "const",  # const (deterministic) | random | none
    which: str = "G_ema",  # G_ema | G
    device: str = "auto",  # auto (cuda when available) | cpu | cuda[:k]
    batch: int = 16,  # images per forward pass
    progress: bool = True,  # tqdm bars
    grid: Mapping | GridOptions | None = None,  # None = GridOptions()
    interp: Mapping | InterpOptions | None = None,  # None = InterpOptions()
    mixing: Mapping | MixingOptions | None = None,  # None = MixingOptions()
    embedding: Mapping | EmbeddingOptions | None = None,  # None = EmbeddingOptions()
) -> Path:
    """Write what `what` asks for into `out` and return `out`."""
    what = [what] if isinstance(what, str) else list(what)
    unknown = [m for m in what if m not in MODES]
    if unknown or not what:
        raise UsageError(f"what={what}: choose from {', '.join(MODES)}")
    if noise_mode not in ("const", "random", "none"):
        raise UsageError(f"noise_mode={noise_mode} must be const, random or none")
    if which not in ("G_ema", "G"):
        raise UsageError(f"which={which} must be G_ema or G")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device={device} but no CUDA device is visible; use device=auto or cpu")
    seed_list = parse_seeds(seeds)
    torch_device = resolve_device(device)
    G, path, class_names, geometry, made_with = load_source(ckpt, which)
    G = G.to(torch_device)
    out = Path(out).expanduser() if out not in (None, "") else default_out(path)
    classes = pick_classes(G, class_names, class_name, class_index)
    r = Renderer(G, geometry, psi, truncation_cutoff, noise_mode, batch, progress)
    opts = [
        kind(**(o or {})) if o is None or isinstance(o, Mapping) else o
        for o, kind in (
            (grid, GridOptions),
            (interp, InterpOptions),
            (mixing, MixingOptions),
            (embedding, EmbeddingOptions),
        )
    ]
    out.mkdir(parents=True, exist_ok=True)
    log.info("%s from %s (%s) -> %s", which, path, ", ".join(n for _, n in classes) or "unconditional", out)
    for label, name in classes:
        tag = f"_{re.sub(r'[^A-Za-z0-9._-]', '_', name)}" if name else ""
        if "images" in what:
            write_images(r, out, seed_list, label, tag[1:])
        if "grid" in what:
            write_grid(r, out, seed_list, label, tag, cast(GridOptions, opts[0]))
        if "interp" in what:
            write_interp(r, out, label, tag, cast(InterpOptions, opts[1]))
        if "mixing" in what:
            write_mixing(r, out, label, tag, cast(MixingOptions, opts[2]))
    if "embedding" in what:
        write_embedding(r, out, classes, cast(EmbeddingOptions, opts[3]), made_with)
    return out


def generate_from_config(cfg: DictConfig) -> Path:
    """`generate` with the values of a composed conf/generate.yaml."""
    values = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    values.pop("hydra", None)
    return generate(**values)


@hydra.main(config_path=str(CONF_DIR), config_name="generate", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with cli.user_errors("generate"):
        generate_from_config(cfg)


def main() -> None:
    cli.hydra_entry("generate", "generate", _hydra_main)


if __name__ == "__main__":
    main()
