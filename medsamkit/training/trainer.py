"""The training loop: parts, optimiser, schedule, AMP, accumulation, validation, checkpoints, resume.

``Trainer(model, cfg).fit()`` trains ``model.net`` in place and writes into ``cfg.out``::

    config.yaml            the resolved options (``medsamkit train config.yaml`` re-runs them)
    dataset_split.json     training / validation cases
    metrics.jsonl          one JSON event per line (see metrics_log.py); TensorBoard events if installed
    checkpoints/last.pt    resumable state, rewritten atomically after every epoch (and every save_every steps)
    adapter.safetensors    the trained weights of the best validation epoch (+ adapter.json manifest)

Recipe (MedSAM / SAM-Med2D): AdamW (lr 1e-4, weight decay 0.01), linear warm-up then cosine decay
per optimizer step, gradient-norm clipping, bf16 autocast on CUDA only (CPU runs in float32),
gradient accumulation, validation Dice after every epoch with early stopping.

Exact resume: every random choice is a function of (seed, epoch, sample position) (dataset.py),
and a checkpoint stores the trained weights, optimizer, scheduler, RNG states, the epoch in
progress and the micro-batches of it already consumed, so ``fit(resume=True)`` continues with the
very steps the uninterrupted run would have taken (the tests compare weights bit for bit).
``cancel()`` turning true saves a checkpoint at the last optimizer step and ends with status ``stopped``.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..embedding_cache import EmbeddingCache
from ..errors import CheckpointError, InputError
from ..io import atomic_output
from ..progress import ProgressFn, CancelFn
from . import distributed
from ..models.adapter_file import build_manifest, save_adapter
from .cases import case_summary
from .checkpointing import load_checkpoint, remove_partials, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, dump_yaml
from .dataset import SampleDataset, TrainingData, collate
from .frozen_encoder import FrozenEmbeddings
from .losses import make_loss
from .schedule import WarmupCosine
from .metrics_log import MetricsWriter
from .parts import configure_trainable, set_train_modes, trained_state
from .prompt_simulation import CorrectionClick, make_prompt_generator
from .train_step import TrainStep, batch_to_device
from .validation import evaluate, validation_backend


@dataclass
class TrainResult:
    status: str                      # finished | early-stopped | stopped
    step: int                        # optimizer steps done in total
    epoch: int                       # epochs completed
    best_dice: float | None
    dice_before: float | None
    adapter: Path | None
    checkpoint: Path
    losses: list = field(default_factory=list)   # (step, loss) of the steps run in this call


class Trainer:
    """Train ``model`` (a PromptableModel, trained in place) with ``cfg``; see the module docstring.

    data / prompt / loss / click: override the defaults built from ``cfg`` (TrainingData, a prompt
    generator from prompt_simulation, a loss from losses, CorrectionClick). embedding_cache: share
    a cache of frozen-encoder embeddings between runs on the same base weights.
    """

    def __init__(self, model, cfg: TrainConfig, data: TrainingData | None = None, prompt=None, loss=None,
                 click=None, progress: ProgressFn = None, cancel: CancelFn = None,
                 embedding_cache: EmbeddingCache | None = None, dist_info: distributed.DistInfo | None = None):
        self.cfg = cfg.validate()
        self.model = model
        self.net = model.net
        self.parts = cfg.part_list()
        self.dist = dist_info or distributed.DistInfo()
        self.device = torch.device(model.device)
        self.progress, self.cancel = progress, cancel
        self.adapter_layout = None
        if "adapters" in self.parts:
            from .adapter_layers import prepare_adapters

            self.adapter_layout = prepare_adapters(model, seed=cfg.seed)
        trainable = configure_trainable(self.net, self.parts)
        self.params = [p for n, p in self.net.named_parameters() if p.requires_grad]
        self.trainable_names = trainable
        self.data = data or TrainingData(cfg, model.transform, model.low_res_size)
        self.prompt = prompt or make_prompt_generator(cfg.prompt, cfg.box_jitter, cfg.points)
        self.loss_fn = loss or make_loss(cfg.loss, model.kind)
        self.step_module = TrainStep(self.net, self.loss_fn, model.spec.multimask == "always", cfg.clicks,
                                     click or CorrectionClick())
        self.encoder_frozen = "encoder" not in self.parts and "adapters" not in self.parts
        self.embed = None
        self.val_backend = None  # validation runs through a LocalBackend on this model (validation.py)
        if self.encoder_frozen:
            cache = None
            if cfg.cache_embeddings != "off":
                cache = embedding_cache if embedding_cache is not None else EmbeddingCache(int(cfg.cache_gb * (1 << 30)))
            base_sha = getattr(model, "base_checkpoint_sha256", None) or model.checkpoint_sha256 or f"random-{id(self.net)}"
            self.embed = FrozenEmbeddings(self.net, f"{model.kind}:{base_sha}", cache, max_batch=cfg.batch_size,
                                          disk_dir=cfg.embedding_dir)
        self.val_objects = None
        if cfg.val_data:  # click-protocol validation on separate folders (click_validation.py)
            from .click_validation import manifest_objects

            self.val_objects = manifest_objects(cfg.val_data, cfg.val_objects)
            if cfg.embedding_dir and self.encoder_frozen:
                from .click_validation import DiskEmbeddingCache

                self.val_cache = DiskEmbeddingCache(cfg.embedding_dir, self.embed.base_id)
            else:
                self.val_cache = EmbeddingCache(2 << 30)
        self.amp = self.device.type == "cuda" and cfg.amp in ("auto", "bf16")
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        per_rank = len(distributed.shard(list(range(len(self.data.train_refs(0)))), self.dist))
        self.micro_per_epoch = max(1, -(-per_rank // cfg.batch_size))
        self.steps_per_epoch = -(-self.micro_per_epoch // cfg.accumulate)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        warmup = int(round(cfg.warmup * self.total_steps)) if cfg.warmup < 1 else int(cfg.warmup)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupCosine(max(1, warmup), self.total_steps, cfg.min_lr_ratio))
        self.runner = self.step_module
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.runner = DistributedDataParallel(
                self.step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)  # e.g. the IoU head gets no gradient from Dice+BCE
        self.out = Path(cfg.out)
        self.last = self.out / "checkpoints" / "last.pt"
        self.adapter_path = self.out / "adapter.safetensors"
        self.state = {"epoch": 0, "batch_in_epoch": 0, "step": 0, "best_dice": None, "best_epoch": None,
                      "bad_epochs": 0, "dice_before": None}

    # ------------------------------------------------------------------------------------------ run
    def fit(self, resume: bool = False) -> TrainResult:
        cfg, main = self.cfg, self.dist.is_main
        if resume:
            self._restore(load_checkpoint(self.last))
        elif self.last.exists():
            raise InputError(f"{self.out} already holds a training run (checkpoints/last.pt). Resume it with --resume, "
                             "or choose another --out folder.")
        writer = MetricsWriter(self.out / "metrics.jsonl", cfg.tensorboard, enabled=main)
        if main:
            self._write_run_files()
        st = self.state
        writer.write("start", run=str(self.out), model=self.model.kind, parts=list(self.parts),
                     train_samples=len(self.data.train_refs(0)), val_samples=len(self.data.val_refs()),
                     steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps, epochs=cfg.epochs,
                     device=str(self.device), world_size=self.dist.world, resumed_from_step=st["step"] if resume else None,
                     warnings=self.data.warnings)
        losses: list = []
        status = None
        try:
            if not resume and cfg.validate_before and self.has_validation:
                res = self._validate()
                if main:
                    st["dice_before"] = res["dice"]
                    writer.write("val", epoch=0, step=0, dice=res["dice"], per_case=res["per_case"],
                                 **({"figures": res["figures"]} if "figures" in res else {}))
            while status is None and st["epoch"] < cfg.epochs:
                status = self._run_epoch(writer, losses)
        except BaseException as exc:
            writer.write("end", status="failed", step=st["step"], message=f"{type(exc).__name__}: {exc}"[:500])
            writer.close()
            raise
        status = status or "finished"
        adapter = self.adapter_path if self.adapter_path.exists() else None
        writer.write("end", status=status, step=st["step"], best_dice=st["best_dice"],
                     dice_before=st["dice_before"], adapter=str(adapter) if adapter else None)
        writer.close()
        return TrainResult(status, st["step"], st["epoch"], st["best_dice"], st["dice_before"], adapter,
                           self.last, losses)

    def _run_epoch(self, writer: MetricsWriter, losses: list) -> str | None:
        """One (possibly resumed) epoch + validation + checkpoint. Returns a final status or None to go on."""
        cfg, st = self.cfg, self.state
        epoch = st["epoch"]
        refs = self.data.train_refs(epoch)
        indices = distributed.shard(list(range(len(refs))), self.dist)
        dataset = SampleDataset(self.data, refs, self.prompt, epoch, train=True)
        start = st["batch_in_epoch"]
        subset = torch.utils.data.Subset(dataset, indices[start * cfg.batch_size:])
        loader = torch.utils.data.DataLoader(subset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate,
                                             num_workers=cfg.num_workers)
        n_micro = self.micro_per_epoch
        set_train_modes(self.net, self.parts)
        self.optimizer.zero_grad(set_to_none=True)
        done_micro, acc_loss, images, t0, stop = start, 0.0, 0, time.perf_counter(), None
        for m, batch in enumerate(loader, start=start):
            if self._cancelled():
                stop = "stopped"
                break
            group_start = (m // cfg.accumulate) * cfg.accumulate
            group = min(cfg.accumulate, n_micro - group_start)
            closes_group = m + 1 - group_start == group
            batch = batch_to_device(batch, self.device)
            sync = contextlib.nullcontext() if (closes_group or not self.dist.enabled) else self.runner.no_sync()
            with sync:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                    emb = self.embed(batch["image"], batch["key"]) if self.embed is not None else None
                    loss = self.runner(batch, emb)
                (loss / group).backward()
            acc_loss += float(loss.detach()) / group
            images += batch["image"].shape[0]
            if not closes_group:
                continue
            grad_norm = self._clip()
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            st["step"] += 1
            done_micro = m + 1
            step_loss = distributed.mean(acc_loss, self.dist, self.device)
            losses.append((st["step"], step_loss))
            elapsed = max(time.perf_counter() - t0, 1e-9)
            writer.write("step", step=st["step"], epoch=epoch + 1, loss=step_loss, lr=self.scheduler.get_last_lr()[0],
                         grad_norm=grad_norm, images_per_s=images * self.dist.world / elapsed)
            if self.progress is not None:
                self.progress(st["step"], self.total_steps, f"epoch {epoch + 1}/{cfg.epochs} loss {step_loss:.4f}")
            acc_loss, images, t0 = 0.0, 0, time.perf_counter()
            if cfg.val_every and st["step"] % cfg.val_every == 0 and done_micro < n_micro:
                decision = self._after_epoch(writer, epoch, done_micro)
                self._save(writer, epoch, done_micro)
                if decision:
                    stop = decision
                    break
            elif cfg.save_every and st["step"] % cfg.save_every == 0 and done_micro < n_micro:
                self._save(writer, epoch, done_micro)
            if cfg.max_steps and st["step"] >= cfg.max_steps:
                stop = "finished"
                break
        self.optimizer.zero_grad(set_to_none=True)  # a cancelled, unfinished accumulation group is dropped
        if stop == "stopped":
            self._save(writer, epoch, done_micro)
            return stop
        epoch_done = done_micro >= n_micro
        if stop == "early-stopped":  # decided by a mid-epoch validation (val_every), already saved
            return stop
        decision = self._after_epoch(writer, epoch + 1 if epoch_done else epoch)
        if epoch_done:
            self._save(writer, epoch + 1, 0)
        else:
            self._save(writer, epoch, done_micro)
        return stop or decision

    @property
    def has_validation(self) -> bool:
        return self.val_objects is not None or self.data.has_validation

    def _after_epoch(self, writer: MetricsWriter, epoch_label: int, batch: int | None = None) -> str | None:
        """Validate, keep the best weights as the adapter, decide early stopping (rank 0 decides)."""
        cfg, st = self.cfg, self.state
        decision = None
        if self.has_validation:
            res = self._validate()
            if self.dist.is_main:
                dice = res["dice"]
                writer.write("val", epoch=epoch_label, step=st["step"], dice=dice, per_case=res["per_case"],
                             **({"figures": res["figures"]} if "figures" in res else {}),
                             **({"batch_in_epoch": batch} if batch is not None else {}))
                if st["best_dice"] is None or dice > st["best_dice"] + cfg.min_delta:
                    st.update(best_dice=dice, best_epoch=epoch_label, bad_epochs=0)
                    self._export(writer, dice, epoch_label)
                else:
                    st["bad_epochs"] += 1
                    if cfg.patience and st["bad_epochs"] >= cfg.patience:
                        decision = "early-stopped"
        elif self.dist.is_main:
            self._export(writer, None, epoch_label)
        decision = distributed.broadcast(decision, self.dist)
        st.update(distributed.broadcast({k: st[k] for k in ("best_dice", "best_epoch", "bad_epochs")}, self.dist))
        set_train_modes(self.net, self.parts)
        return decision

    def _validate(self) -> dict:
        if self.dist.is_main and self.val_objects is not None:
            from .click_validation import evaluate_clicks

            self.net.eval()
            res = evaluate_clicks(self.model, self.val_objects, self.val_cache)
            self.last_figures = res["figures"]
        elif self.dist.is_main:
            if self.val_backend is None:
                self.val_backend = validation_backend(self.model)
            elif not self.encoder_frozen:  # the encoder moved: embeddings of the last validation are stale
                self.val_backend.predictor.cache.clear()
            res = evaluate(self.val_backend, self.data, self.data.val_refs(), self.prompt)
        else:
            res = None
        distributed.barrier(self.dist)
        set_train_modes(self.net, self.parts)
        return res

    def _clip(self) -> float:
        if self.cfg.grad_clip > 0:
            return float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip))
        grads = [p.grad.detach().norm() for p in self.params if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack(grads))) if grads else 0.0

    def _cancelled(self) -> bool:
        flag = bool(self.cancel is not None and self.cancel())
        return bool(distributed.broadcast(flag, self.dist)) if self.dist.enabled else flag

    # ------------------------------------------------------------------------------------------ files
    def _base(self) -> dict:
        sha = getattr(self.model, "base_checkpoint_sha256", None) or self.model.checkpoint_sha256
        return {"kind": self.model.kind, "checkpoint_sha256": sha}

    def _save(self, writer: MetricsWriter, epoch: int, batch_in_epoch: int) -> None:
        st = self.state
        st["epoch"], st["batch_in_epoch"] = epoch, batch_in_epoch
        if self.dist.is_main:
            save_checkpoint(self.last, {
                "config": self.cfg.to_dict(), "base": self._base(), "parts": list(self.parts),
                "adapter_layout": self.adapter_layout,
                "cases": [s.case_id for s in self.data.sources],
                "trained_state": trained_state(self.net, self.parts),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(), **{k: st[k] for k in st},
            })
            writer.write("checkpoint", epoch=epoch, step=st["step"], path=str(self.last))
        distributed.barrier(self.dist)

    def _restore(self, state: dict) -> None:
        if state["base"] != self._base():
            raise CheckpointError(f"The run in {self.out} was trained on {state['base']['kind']} weights "
                                  f"{state['base']['checkpoint_sha256'][:12]}...; load the same base model to resume it.")
        if list(state["parts"]) != list(self.parts):
            raise CheckpointError(f"The run in {self.out} trains parts {'+'.join(state['parts'])}, not "
                                  f"{'+'.join(self.parts)}; resume with the same --parts.")
        if state.get("adapter_layout") != self.adapter_layout:
            raise CheckpointError(f"The run in {self.out} used adapter layout {state.get('adapter_layout')}, but this "
                                  f"network has {self.adapter_layout}; resume with the same base model.")
        if list(state["cases"]) != [s.case_id for s in self.data.sources]:
            raise InputError(f"The training data changed since the run in {self.out} started (different cases); "
                             "resume with the same data, or start a new run.")
        params = self.net.state_dict()
        missing = [k for k in state["trained_state"] if k not in params]
        if missing:
            raise CheckpointError(f"Checkpoint keys do not fit the network (e.g. {missing[0]}).")
        with torch.no_grad():
            for k, v in state["trained_state"].items():
                params[k].copy_(v.to(params[k].device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        for key in self.state:
            self.state[key] = state[key]

    def _write_run_files(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        remove_partials(self.out)
        remove_partials(self.last.parent)
        with atomic_output(self.out / "config.yaml") as tmp:
            Path(tmp).write_text(dump_yaml(self.cfg), encoding="utf-8")
        split = {"train": case_summary([self.data.sources[i] for i in self.data.train_cases]),
                 "validation": case_summary([self.data.sources[i] for i in self.data.val_cases]),
                 "validation_slices": {f"{self.data.sources[c].case_id}/{self.data.structures[c][s].name}":
                                       v.tolist() for (c, s), v in self.data.val_slices.items()},
                 "warnings": self.data.warnings}
        with atomic_output(self.out / "dataset_split.json") as tmp:
            Path(tmp).write_text(json.dumps(split, indent=1), encoding="utf-8")

    def _export(self, writer: MetricsWriter, dice, epoch_label: int) -> None:
        cfg, st = self.cfg, self.state
        prep = {"transform": vars(self.model.transform.spec), "window": cfg.window,
                "normalizations": {s.case_id: n.label or n.key for s, n in zip(self.data.sources, self.data.norms)}}
        manifest = build_manifest(
            self.model, self.parts, self.adapter_layout, preprocessing=prep,
            prompt={"prompt": cfg.prompt, "box_jitter": cfg.box_jitter, "clicks": cfg.clicks},
            metrics={"val_dice_before": st["dice_before"], "val_dice": dice, "epoch": epoch_label, "step": st["step"],
                     **({"val_figures": self.last_figures} if getattr(self, "last_figures", None) else {})},
            training={k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "loss", "seed",
                                                   "augment", "axis", "labels")})
        save_adapter(self.adapter_path, trained_state(self.net, self.parts), manifest)
        writer.write("adapter", path=str(self.adapter_path), dice=dice, epoch=epoch_label)


def run_training(cfg: TrainConfig, resume: bool = False, progress: ProgressFn = None, cancel: CancelFn = None,
                 embedding_cache: EmbeddingCache | None = None) -> TrainResult:
    """Load the base model named by ``cfg`` (per rank under torchrun) and train it; the CLI's entry point."""
    from ..models.loader import load_model

    cfg.validate()
    info, device = distributed.init(cfg.device)
    try:
        model = load_model(cfg.model, cfg.checkpoint, device or cfg.device, engine="torch")  # trains the network
        trainer = Trainer(model, cfg, progress=progress if info.is_main else None, cancel=cancel,
                          embedding_cache=embedding_cache, dist_info=info)
        return trainer.fit(resume=resume)
    finally:
        distributed.cleanup(info)
