"""Fine-tuning: a new run's networks from another run's weights (`init=`), tensor by tensor.

A new StyleGAN2Module (fresh counters, optimizers, ADA state, sample latents) takes G, D and
G_ema from a source checkpoint's state dict, plus the path-length mean (a property of G's
weights) and, when asked, ADA's p. Every tensor taken must have the same shape in both. Where
the two runs' classes differ (unconditional -> conditional, or another set of classes) the
class-conditional tensors are not taken: they start as in a new model:

    G's class embedding (mapping.embed), D's class embedding and class mapping network
    (c_embed, c_mapping) and, when conditioning is switched on or off, D's output layer
    (one logit vs. a projection onto the class embedding: another shape).

G's first mapping layer reads [z, embedded class] in a conditional model and z alone in an
unconditional one. Between the two its z columns carry the source's weights, rescaled for the
new fan-in (equalized learning rate divides by sqrt(fan-in)), and a new model's class columns
start at zero: the mapping network computes exactly what the source's did, for every class,
and the classes separate as training moves those columns. The per-class w averages start at the
source's w average (the truncation centre every class has at that point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..utils.errors import UsageError

NETWORKS = ("G.", "G_ema.", "D.")  # state-dict prefixes of the networks taken from the source
CARRIED = ("pl_mean",)  # module buffers that belong with G's weights
ADA_P = "augment_pipe.p"  # ADA's probability (taken only with keep_ada)
CLASS_TENSORS = ("mapping.embed.", "mapping.w_avg_class", "c_embed.", "c_mapping.")  # after the network prefix
FIRST_MAPPING = "mapping.layers.0.weight"  # G's first mapping layer: [w_dim, z_dim (+ w_dim if conditional)]
D_OUTPUT = ("D.epilogue.out.weight", "D.epilogue.out.bias")  # [1 or cmap_dim, C4], [1 or cmap_dim]


@dataclass
class TransferReport:
    """What `transfer_weights` did with each tensor of the new module's networks."""

    loaded: list[str] = field(default_factory=list)  # equal to the source's
    rescaled: list[str] = field(default_factory=list)  # G's first mapping layer, its z columns taken
    fresh: list[str] = field(default_factory=list)  # class-conditional: initialized as in a new model
    skipped: list[str] = field(default_factory=list)  # 'name: source shape -> this shape' (strict=False)
    unused: list[str] = field(default_factory=list)  # source tensors the new module has no place for


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(map(str, t.shape)) + "]"


def _is_class_tensor(name: str) -> bool:
    local = name.split(".", 1)[1] if name.startswith(NETWORKS) else name
    return local.startswith(CLASS_TENSORS)


def taken_names(state: dict[str, torch.Tensor], keep_ada: bool) -> list[str]:
    """The entries of a module's state dict that fine-tuning takes from the source."""
    return [k for k in state if k.startswith(NETWORKS) or k in CARRIED or (keep_ada and k == ADA_P)]


def first_mapping_source_shape(target: torch.Tensor, z_dim: int) -> torch.Size:
    """The shape G's first mapping weight must have in a source whose conditioning differs from `target`'s.

    target [w_dim, z_dim + w_dim] (conditional) needs an unconditional source [w_dim, z_dim], and
    target [w_dim, z_dim] a conditional one [w_dim, z_dim + w_dim]: same z and w, other widths refused.
    """
    w_dim = target.shape[0]
    return torch.Size([w_dim, z_dim if target.shape[1] > z_dim else z_dim + w_dim])


def widen_first_mapping(source: torch.Tensor, target: torch.Tensor, z_dim: int) -> torch.Tensor:
    """G's first mapping weight for another input width: the source's z columns, rescaled; other columns 0.

    source [w_dim, z_dim + a], target [w_dim, z_dim + b] (a, b = w_dim or 0). The layer scales
    its weight by 1 / sqrt(fan-in) at run time, so the z columns are multiplied by
    sqrt(fan-in here / fan-in there) to compute the same pre-activations from z.
    """
    out = torch.zeros_like(target)
    out[:, :z_dim] = source[:, :z_dim].to(target.dtype) * math.sqrt(target.shape[1] / source.shape[1])
    return out


def transfer_weights(
    module: torch.nn.Module,  # a new StyleGAN2Module; its state is replaced in place
    source: dict[str, torch.Tensor],  # the source checkpoint's state dict
    *,
    z_dim: int,  # the networks' z dimensionality (G's first mapping layer)
    same_classes: bool,  # both runs have the same classes (or both none): the class tensors are taken too
    conditioning_changed: bool,  # one run is conditional and the other not
    strict: bool = True,  # a tensor of another shape (or missing in the source) is refused; False: left fresh
    keep_ada: bool = False,  # also take ADA's p
    where: str = "init",  # names the source in messages, e.g. 'init=<path>'
    hint: str = "",  # appended to a refusal, e.g. the settings in which the networks differ
) -> TransferReport:
    """Copies the source's tensors into `module` as the module docstring says; returns what was done."""
    state = module.state_dict()
    report = TransferReport()
    if keep_ada and ADA_P not in state:
        raise UsageError("init_keep_ada=true, but this run has no ADA (augment.mode=none): leave init_keep_ada out")
    if keep_ada and ADA_P not in source:
        raise UsageError(f"init_keep_ada=true, but {where} was trained without ADA: leave init_keep_ada out")
    new = dict(state)
    for name in taken_names(state, keep_ada):
        target = state[name]
        network = name.split(".", 1)[0]
        if _is_class_tensor(name) and not same_classes:
            w_avg = source.get(f"{network}.mapping.w_avg")
            if name.endswith("mapping.w_avg_class") and w_avg is not None and w_avg.shape[-1] == target.shape[-1]:
                new[name] = w_avg.to(target.dtype).expand_as(target).clone()
            report.fresh.append(name)
            continue
        if name in D_OUTPUT and conditioning_changed:
            report.fresh.append(name)
            continue
        widen = name.endswith(FIRST_MAPPING) and conditioning_changed
        expected = first_mapping_source_shape(target, z_dim) if widen else target.shape
        if name not in source or source[name].shape != expected:
            problem = (
                f"{name} is not in {where}"
                if name not in source
                else f"{name} has shape {_shape(source[name])} in {where} and {_shape(target)} here"
            )
            if strict:
                raise UsageError(
                    f"{problem}{hint}; train with the source's network settings, or init_strict=false to leave "
                    "such tensors fresh"
                )
            report.skipped.append(
                f"{name}: {'missing' if name not in source else _shape(source[name])} -> {_shape(target)}"
            )
            continue
        if widen:
            new[name] = widen_first_mapping(source[name], target, z_dim)
            report.rescaled.append(name)
            continue
        new[name] = source[name].to(target.dtype).clone()
        report.loaded.append(name)
    report.unused = [k for k in source if k.startswith(NETWORKS) and k not in state]
    module.load_state_dict(new)
    return report
