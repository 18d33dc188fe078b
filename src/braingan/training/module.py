"""The StyleGAN2 LightningModule: G, D, G_ema and ADA under manual optimization.

One training step = one batch of reals, run through up to four phases as in StyleGAN2:
G main (non-saturating loss), G reg (lazy path length, every `pl_interval` batches),
D main (logistic loss, with the ADA statistic), D reg (lazy R1, every `r1_interval` batches).
Time is counted in images shown to D (`cur_nimg`, global over all processes).

Several processes (training/distributed.py): each takes batch_size / world_size images per
step; gradients are averaged over the ranks before every optimizer step, so the learning rate,
R1 gamma and path-length weight mean the same at any GPU count. The path-length mean, the ADA
statistic and the tracked w averages are reduced too, and every checkpoint proves (by digests of
all weights and buffers) that the ranks still agree.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from ..checkpoint import hyperparameters, training_state, write_training_state
from ..data.fit import Geometry
from ..nn.augment import AugmentPipe, ada_adjust
from ..nn.config import NetworkConfig
from ..nn.discriminator import Discriminator
from ..nn.synthesis import Generator
from ..utils.errors import UsageError
from . import losses
from .config import TrainConfig
from .distributed import (
    all_reduce_mean_,
    all_reduce_sum,
    average_gradients_,
    diverged,
    gather_objects,
    is_distributed,
    missing_grads,
    state_digests,
)
from .ema import ema_beta, update_ema


class NonFiniteLossError(RuntimeError):
    """Raised after `max_nonfinite` steps in a row produced a non-finite loss."""


def _set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class StyleGAN2Module(pl.LightningModule):
    ada_stat: torch.Tensor  # a buffer, registered in __init__

    def __init__(
        self,
        net: dict | NetworkConfig,  # network hyperparameters
        train: dict | TrainConfig,  # training hyperparameters
        data: dict
        | None = None,  # what generation needs about the data: class_names, geometry (SliceDataModule.data_info)
    ):
        super().__init__()
        self.net_cfg = net if isinstance(net, NetworkConfig) else NetworkConfig.from_dict(net)
        self.train_cfg = train if isinstance(train, TrainConfig) else TrainConfig.from_dict(train)
        self.data_info = dict(data or {})
        # Plain dicts in the checkpoint, so the networks rebuild from the file alone.
        self.save_hyperparameters(
            hyperparameters(self.net_cfg.to_dict(), self.train_cfg.to_dict(), self.data_info), logger=False
        )
        self.automatic_optimization = False

        self.G = Generator(self.net_cfg)
        self.D = Discriminator(self.net_cfg)
        self.G_ema = copy.deepcopy(self.G).eval()
        _set_requires_grad(self.G_ema, False)
        tc = self.train_cfg
        if tc.augment.mode not in ("ada", "fixed", "none"):
            raise UsageError(f"augment.mode must be ada, fixed or none, got {tc.augment.mode!r}")
        self.augment_pipe = AugmentPipe(**tc.augment.pipe, p_init=tc.augment.p) if tc.augment.mode != "none" else None

        # Training state that must survive a resume lives in buffers (saved in the state dict).
        self.register_buffer("pl_mean", torch.zeros([]))
        self.register_buffer("ada_stat", torch.zeros(2))  # [sum of sign(D(real)), count] since the last p update
        # Conditional: one grid row per class (row k holds class k), num_samples // c_dim per row
        # (at least one), so every class is shown.
        c_dim = self.net_cfg.c_dim
        self.sample_rows = c_dim if c_dim > 0 else None
        per_row = max(1, tc.num_samples // c_dim) if c_dim > 0 else tc.num_samples
        num_samples = per_row * max(c_dim, 1)
        g = torch.Generator().manual_seed(tc.sample_seed)
        self.register_buffer("sample_z", torch.randn(num_samples, self.net_cfg.z_dim, generator=g))
        self.register_buffer("sample_c", torch.arange(num_samples) // per_row)  # [num_samples] class of each
        self.cur_nimg = 0  # images shown to D so far (all processes)
        self.prev_nimg = 0  # cur_nimg before the last step (callbacks fire on crossing a tick)
        self.batch_idx = 0  # training steps so far (drives the lazy intervals)
        self.nonfinite_total = 0
        self.nonfinite_in_row = 0
        self.last_good_ckpt: str | None = None  # set by the checkpoint callback
        self.run_config: dict | None = None  # the run's flattened settings, saved in checkpoints (train.py)
        self._pending_rng: dict | None = None
        self._grads_checked: set[str] = set()  # phases whose first backward was checked for missing gradients
        self._stats: dict[str, list[torch.Tensor]] = {}
        # speed.compile: torch.compile'd G.synthesis and D, built on first use (see _fast).
        self._compiled: dict[str, Callable] | None = None
        self._tick_time = time.perf_counter()
        self._tick_nimg = 0

    # ------------------------------------------------------------------------------------------
    # Helpers

    @property
    def cur_kimg(self) -> float:
        return self.cur_nimg / 1000.0

    @property
    def geometry(self) -> Geometry | None:
        """Native size and fit policy of the training images; None when not known."""
        g = self.data_info.get("geometry")
        return Geometry.from_dict(g) if g else None

    @property
    def ada_p(self) -> float:
        return float(self.augment_pipe.p) if self.augment_pipe is not None else 0.0

    def _one_hot(self, labels: torch.Tensor) -> torch.Tensor | None:
        if self.net_cfg.c_dim == 0:
            return None
        return F.one_hot(labels.long(), self.net_cfg.c_dim).float()

    def _run_mapping(self, z: torch.Tensor, c: torch.Tensor | None, update_emas: bool) -> torch.Tensor:
        """Mapping with style mixing: with probability p, ws after a random cutoff come from a second z."""
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.train_cfg.style_mixing > 0:
            num_ws = ws.shape[1]
            cutoff = torch.randint(1, num_ws, [], device=ws.device)
            cutoff = torch.where(torch.rand([], device=ws.device) < self.train_cfg.style_mixing, cutoff, num_ws)
            mix = (torch.arange(num_ws, device=ws.device) >= cutoff)[None, :, None]
            ws = torch.where(mix, self.G.mapping(torch.randn_like(z), c, update_emas=False), ws)
        return ws

    def _fast(self, name: str) -> Callable:
        """The forward of the main phases: G.synthesis ('synthesis') or D ('D'), compiled under speed.compile.

        The compiled callables wrap the eager modules and share their parameters, and live in a
        plain dict (not registered as submodules): state_dict keys, checkpoints, the EMA and the
        gradient averaging are the same with compile on or off. Built on first use, so __init__
        and G_ema's copy never see them. Path length and R1 never use them: they take gradients
        with create_graph=True, and AOTAutograd has no double backward.
        """
        eager = self.G.synthesis if name == "synthesis" else self.D
        if not self.train_cfg.compile:
            return eager
        if self._compiled is None:
            # dynamic=False: the main phases see one batch shape per rank (drop_last), so one
            # static graph per grad mode / requires_grad pattern; no symbolic shapes.
            tc = self.train_cfg
            opts: dict[str, Any] = {"backend": tc.compile_backend, "dynamic": False}
            if tc.compile_backend == "inductor" or tc.compile_mode != "default":
                opts["mode"] = tc.compile_mode  # the modes are inductor's; other backends reject them
            self._compiled = {"synthesis": torch.compile(self.G.synthesis, **opts), "D": torch.compile(self.D, **opts)}
        return self._compiled[name]

    def __getstate__(self) -> dict:
        # A copy or pickle of the module compiles afresh on first use (the compiled wrappers
        # hold the original modules and dynamo's caches).
        state = super().__getstate__()
        state["_compiled"] = None
        return state

    def _run_D(self, img: torch.Tensor, c: torch.Tensor | None, fast: bool = False) -> torch.Tensor:
        """Augment, then D; fast = the compiled D of the main phases (speed.compile), else the eager one."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return (self._fast("D") if fast else self.D)(img, c)

    def _record(self, name: str, value: torch.Tensor) -> None:
        # Kept on the device; turned into floats only when the logger asks (no sync per step).
        self._stats.setdefault(name, []).append(value.detach().float().mean())

    def _opt_step(self, opt, loss: torch.Tensor, phase: str, net: torch.nn.Module | None = None) -> bool:
        """Backward + step when the loss is finite; otherwise drop the gradients and report False.

        Under several processes the decision is collective (one rank's NaN skips the step on
        all of them) and the gradients are averaged over the ranks before the step. The first
        backward of a main phase must reach every trainable parameter of `net` (no silent unused
        parameter; the regularizers legitimately skip some, e.g. output biases, which count as 0). A finite loss can still give non-finite gradients (double backward of R1 /
        path length): those are replaced as in StyleGAN2-ADA so one bad element cannot poison
        Adam's moments. Under 16-mixed the gradient scaler needs to see the overflow, so they
        are left alone.
        """
        opt.zero_grad(set_to_none=True)
        if float(all_reduce_sum((~torch.isfinite(loss.detach())).any().float())) > 0:
            return False
        self.manual_backward(loss)
        if net is not None and phase not in self._grads_checked:
            self._grads_checked.add(phase)
            missing = missing_grads(net.named_parameters())
            if missing:
                raise RuntimeError(f"{phase}: no gradient reached {', '.join(missing)}; the loss does not use them")
        average_gradients_(p for group in opt.param_groups for p in group["params"])
        if self.trainer is None or self.trainer.precision != "16-mixed":
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
        scaler: Any = (
            getattr(getattr(self.trainer, "precision_plugin", None), "scaler", None) if self._trainer else None
        )
        scale = scaler.get_scale() if scaler is not None else None
        opt.step()
        # 16-mixed: the scaler skips a step with inf/NaN gradients and lowers its scale; count it.
        return scale is None or scaler.get_scale() >= scale

    # ------------------------------------------------------------------------------------------
    # Lightning hooks

    def configure_optimizers(self):
        tc = self.train_cfg
        opts = []
        for params, lr, interval in (
            (self.G.parameters(), tc.lr_g, tc.pl_interval if tc.pl_weight > 0 else 0),
            (self.D.parameters(), tc.lr_d, tc.r1_interval if tc.r1_gamma > 0 else 0),
        ):
            ratio = losses.lazy_regularization_ratio(interval)
            opts.append(torch.optim.Adam(params, lr=lr * ratio, betas=(tc.beta1**ratio, tc.beta2**ratio), eps=1e-8))
        return opts

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0, noise_mode: str = "const"
    ):
        """Images from the EMA generator: [N, z_dim] -> [N, img_channels, R, R] in about [-1, 1]."""
        return self.G_ema(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)

    def on_train_start(self) -> None:
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng)
            self._pending_rng = None
        elif is_distributed():
            # Same initial weights everywhere (seeded, then broadcast); from here on each rank
            # draws its own latents, noise and augmentations.
            world, rank = self.trainer.world_size, self.global_rank
            seed = (torch.initial_seed() % 2**31) * world + rank
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
        self._tick_time, self._tick_nimg = time.perf_counter(), self.cur_nimg
        self.G_ema.eval()

    def training_step(self, batch, batch_idx):
        tc = self.train_cfg
        real, labels = batch  # [N, C, R, R] uint8 (or float in [-1, 1]), [N]
        if real.dtype == torch.uint8:  # the loader ships bytes; convert here, on the device
            real = real.to(torch.float32) / 127.5 - 1.0
        n = real.shape[0]
        c_real = self._one_hot(labels)
        c_gen = self._one_hot(labels.roll(1)) if c_real is not None else None
        opt_g, opt_d = self.optimizers()
        do_pl = tc.pl_weight > 0 and tc.pl_interval > 0 and self.batch_idx % tc.pl_interval == 0
        do_r1 = tc.r1_gamma > 0 and (tc.r1_interval <= 0 or self.batch_idx % tc.r1_interval == 0)
        ok = True
        if tc.compile:  # a new step for CUDA graphs (compile_mode=reduce-overhead); no-op otherwise
            torch.compiler.cudagraph_mark_step_begin()

        # G main: non-saturating loss through the (augmented) discriminator.
        _set_requires_grad(self.G, True)
        _set_requires_grad(self.D, False)
        z = torch.randn(n, self.net_cfg.z_dim, device=real.device)
        fake = self._fast("synthesis")(self._run_mapping(z, c_gen, update_emas=False))
        fake_logits = self._run_D(fake, c_gen, fast=True)
        loss_g = losses.g_nonsaturating_loss(fake_logits)
        ok &= self._opt_step(opt_g, loss_g, "G main", self.G)
        self._record("Loss/G", loss_g)

        # G reg: lazy path-length regularization on a smaller batch (eager: double backward).
        if do_pl:
            m = max(n // tc.pl_batch_shrink, 1)
            z = torch.randn(m, self.net_cfg.z_dim, device=real.device)
            ws = self._run_mapping(z, c_gen[:m] if c_gen is not None else None, update_emas=False)
            img = self.G.synthesis(ws)
            lengths = losses.g_path_lengths(img, ws)
            batch_mean = lengths.detach().mean().reshape(1)
            all_reduce_mean_([batch_mean])  # one running mean for all ranks
            penalty, new_mean = losses.g_path_length_penalty(
                lengths, self.pl_mean, tc.pl_decay, batch_mean=batch_mean[0]
            )
            loss_pl = penalty.mean() * tc.pl_weight * tc.pl_interval
            if self._opt_step(opt_g, loss_pl, "G path length"):
                self.pl_mean.copy_(new_mean.detach())
            else:
                ok = False
            self._record("Loss/pl_penalty", penalty)
            self._record("Loss/path_length", lengths)

        # D main: logistic loss on generated and real images.
        _set_requires_grad(self.G, False)
        _set_requires_grad(self.D, True)
        with torch.no_grad():
            z = torch.randn(n, self.net_cfg.z_dim, device=real.device)
            fake = self._fast("synthesis")(self._run_mapping(z, c_gen, update_emas=True))
        d_fake = self._run_D(fake, c_gen, fast=True)
        d_real = self._run_D(real, c_real, fast=True)
        loss_d = losses.d_logistic_loss(d_real, d_fake)
        ok &= self._opt_step(opt_d, loss_d, "D main", self.D)
        # Only finite logits count toward ADA's statistic (a NaN would make r_t NaN). Summed over
        # the ranks every step, so the statistic, and p, are the same on all of them.
        finite = torch.isfinite(d_real.detach())
        self.ada_stat += all_reduce_sum(
            torch.stack([torch.where(finite, d_real.detach().sign(), 0).sum(), finite.sum().float()])
        )
        self._record("Loss/D", loss_d)
        self._record("D/real", d_real)
        self._record("D/fake", d_fake)

        # D reg: lazy R1 on reals (augmented like every D input; eager D: double backward).
        if do_r1:
            real_r = real.detach().requires_grad_(True)
            r1_logits = self._run_D(real_r, c_real)
            penalty = losses.d_r1_penalty(r1_logits, real_r)
            interval = max(tc.r1_interval, 1)
            loss_r1 = penalty.mean() * (tc.r1_gamma / 2) * interval
            ok &= self._opt_step(opt_d, loss_r1, "D R1")
            self._record("Loss/r1_penalty", penalty)
        _set_requires_grad(self.G, False)

        # Bookkeeping: EMA, counters, ADA.
        self.prev_nimg = self.cur_nimg
        self.cur_nimg += tc.batch_size
        self.batch_idx += 1
        # The tracked w averages moved with each rank's own latents: average them. For w_avg
        # (lerp is linear) this equals tracking the global batch mean; w_avg_class moves only
        # for the classes in each rank's batch, so rare classes track a little more slowly.
        all_reduce_mean_(list(self.G.mapping.buffers()))
        update_ema(self.G_ema, self.G, ema_beta(tc.batch_size, tc.ema_kimg, self.cur_nimg, tc.ema_rampup))
        if tc.augment.mode == "ada" and self.batch_idx % tc.augment.interval == 0:
            self._update_ada_p()
        self._track_nonfinite(ok)
        if self.cur_nimg >= tc.kimg * 1000:
            self.trainer.should_stop = True
        self.log("kimg", self.cur_kimg, prog_bar=True, logger=False, on_step=True)
        self.log("loss_G", loss_g.detach(), prog_bar=True, logger=False, on_step=True)
        self.log("loss_D", loss_d.detach(), prog_bar=True, logger=False, on_step=True)

    def _update_ada_p(self) -> None:
        stat = self.ada_stat.clone()  # already summed over the ranks
        if float(stat[1]) > 0:
            rt = float(stat[0] / stat[1])
            tc = self.train_cfg
            new_p = ada_adjust(self.ada_p, rt, tc.augment.target, tc.batch_size * tc.augment.interval, tc.augment.kimg)
            assert self.augment_pipe is not None  # augment.mode == "ada" builds one
            self.augment_pipe.p.fill_(new_p)
            self._record("ADA/rt", torch.tensor(rt, device=self.device))
        self.ada_stat.zero_()

    def _track_nonfinite(self, ok: bool) -> None:
        if ok:
            self.nonfinite_in_row = 0
            return
        self.nonfinite_total += 1
        self.nonfinite_in_row += 1
        if self.nonfinite_in_row >= self.train_cfg.max_nonfinite:
            where = self.last_good_ckpt or "none written yet"
            raise NonFiniteLossError(
                f"{self.nonfinite_in_row} training steps in a row had a non-finite loss at {self.cur_kimg:.3f} kimg "
                f"({self.nonfinite_total} in total); stopping. Last good checkpoint: {where}"
            )

    # ------------------------------------------------------------------------------------------
    # Statistics for the logger callback

    def pop_stats(self) -> dict[str, float]:
        """Means of everything recorded since the last call (over all ranks), plus progress and speed.

        Collective under several processes: every rank calls it at the same step.
        """
        names = sorted(k for k, v in self._stats.items() if v)
        means = [torch.stack(self._stats[k]).mean().reshape(1) for k in names]
        all_reduce_mean_(means)
        out = {k: float(m) for k, m in zip(names, means)}
        self._stats = {}
        now = time.perf_counter()
        dt, dn = now - self._tick_time, self.cur_nimg - self._tick_nimg
        if dn > 0 and dt > 0:
            out["Speed/img_per_s"] = dn / dt
            out["Speed/sec_per_kimg"] = dt / dn * 1000
        self._tick_time, self._tick_nimg = now, self.cur_nimg
        out["Progress/kimg"] = self.cur_kimg
        out["ADA/p"] = self.ada_p
        out["Progress/nonfinite_steps"] = float(self.nonfinite_total)
        return out

    # ------------------------------------------------------------------------------------------
    # Checkpoint state beyond the state dict

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Called on every rank (the strategy writes rank 0's dict): collectives are safe here.
        rng = gather_objects(_get_rng_state())
        several = len(rng) > 1
        write_training_state(
            checkpoint,
            cur_nimg=self.cur_nimg,
            batch_idx=self.batch_idx,
            nonfinite_total=self.nonfinite_total,
            rng=rng[0],
            run_config=self.run_config,
            rng_per_rank=rng if several else None,
            rank_digests=self.check_ranks_agree() if several else None,
        )

    def check_ranks_agree(self) -> list[dict[str, str]]:
        """Digests of every weight and buffer on every rank; raises if any rank diverged."""
        mine = state_digests(self)
        mine["cur_nimg"] = str(self.cur_nimg)
        per_rank = gather_objects(mine)
        bad = diverged(per_rank)
        if bad:
            raise RuntimeError(
                f"the {len(per_rank)} ranks disagree at {self.cur_kimg:.3f} kimg on {len(bad)} tensors: {', '.join(bad[:10])}"
            )
        return per_rank

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = training_state(checkpoint)
        self.cur_nimg = state.cur_nimg
        self.prev_nimg = self.cur_nimg
        self.batch_idx = state.batch_idx
        self.nonfinite_total = state.nonfinite_total
        # Applied at on_train_start, after Lightning has finished its own set-up. Each rank
        # continues its own stream; with another number of processes, rank 0's plus the rank.
        per_rank = state.rng_per_rank
        rank = self.global_rank if self._trainer is not None else 0
        world = self.trainer.world_size if self._trainer is not None else 1
        if per_rank is not None and len(per_rank) == world:
            self._pending_rng = per_rank[rank]
        elif world == 1 or rank == 0:
            self._pending_rng = state.rng
        else:
            self._pending_rng = None  # on_train_start seeds this rank afresh


def _get_rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
