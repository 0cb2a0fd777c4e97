"""The three stages as :class:`~avf.train.loop.Task` s: masked AV pretraining and supervised fine-tuning.

* :class:`PretrainTask` (stage 1): streaming shards, dual masks drawn per step from seeded generators,
  reconstruction + contrastive losses.
* :class:`SupervisedTask` (stage 2 and 3): indexed shards with exact global batches. Stage 3 trains the
  fine-tuning model on one dataset; stage 2 trains one shared backbone with one head per dataset
  (label spaces are never merged) on a weighted mixture of labelled datasets.

With ``data.ingest: ray`` both decode their training batches in Ray tasks (:mod:`avf.data.remote_batches`)
instead of DataLoader workers: stage 1 then reads an epoch as seeded global batches over the shard indexes
(no clip twice in an epoch, across ranks) instead of a stream, stages 2 and 3 the same global batches as their
DataLoader. Evaluation always uses a DataLoader.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avf.config import FinetuneConfig, Params
from avf.config.train import SelectRule
from avf.data.loader import ClipDataset, collate_clips, item_bytes, pretrain_stream
from avf.data.remote_batches import BatchRequest, BatchSource, RemoteBatches
from avf.data.shm import prefetch_factor
from avf.data.splits import DatasetSplits
from avf.data.transforms import decode_on_device, to_model_input
from avf.train.loop import StepLogs
from avf.train.objectives import AVMixup, classification_loss, multi_head_loss, regression_loss
from avf.train.sampling import GlobalBatchSampler, shard_indices
from avf.train.session import Session
from avf.utils.seed import derive_seed

log = logging.getLogger(__name__)


def _per_rank_micro(global_batch: int, accum: int, world: int) -> int:
    micro = global_batch // accum
    if global_batch % accum or micro % world:
        raise ValueError(f"batch_size {global_batch} must split into accum_steps {accum} x {world} workers evenly")
    return micro // world


def persistent_loader(
    dataset: torch.utils.data.Dataset,
    num_workers: int,
    device: torch.device,
    seed: int,
    batch_bytes: int,
    ranks_per_node: int = 1,
    **kw: Any,
) -> torch.utils.data.DataLoader:
    """One loader for the whole run: its workers persist across epochs (the datasets read the epoch from
    shared memory), its prefetch fits in this rank's share of shared memory (:func:`fitting_prefetch`), and
    its own generator keeps it off the global torch RNG that dropout draws from, so starting an epoch's
    iterator never moves a result."""
    return torch.utils.data.DataLoader(
        dataset,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor(num_workers, batch_bytes, ranks_per_node),
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )


def _remote_epoch(
    remote: RemoteBatches, sampler: GlobalBatchSampler, refs: list[tuple[int, str]], epoch: int, start_micro: int
) -> Iterable[dict[str, Any]]:
    """This rank's micro-batches of ``epoch`` from ``start_micro`` on, decoded by Ray tasks."""
    sampler.set_epoch(epoch, start_micro)
    yield from remote([BatchRequest(epoch, tuple(refs[i] for i in idx)) for idx in sampler])
    if remote.skipped:
        log.warning("%d corrupt training sample(s) skipped so far", remote.skipped)


class PretrainTask:
    """Stage 1: self-supervised audio-visual masked autoencoding on unlabelled shards."""

    layer_decay = None
    select_metric = None
    select_mode = "min"
    select_rule: SelectRule = "last"
    select_epochs = 1

    def __init__(self, params: Params, shard_dirs: Sequence[Path], num_samples: int, session: Session) -> None:
        self.params, self.cfg, self.session = params, params.pretrain, session
        self.compile_model = params.model.compile  # loop.fit compiles the training model
        self.shard_dirs = [Path(p) for p in shard_dirs]
        self.micro = _per_rank_micro(self.cfg.batch_size, self.cfg.accum_steps, session.world_size)
        self.samples_per_epoch = (
            self.cfg.steps_per_epoch * self.cfg.batch_size
            if self.cfg.steps_per_epoch
            else (num_samples // self.cfg.batch_size) * self.cfg.batch_size
        )
        if self.samples_per_epoch < self.cfg.batch_size:
            raise ValueError(f"{num_samples} pretraining clips are fewer than one batch of {self.cfg.batch_size}")
        seed = derive_seed(params.seed, "pretrain")
        self.decode = self.cfg.decode == "worker"  # else the training step decodes the JPEG frames
        self.remote: RemoteBatches | None = None
        if params.data.ingest == "ray":
            self._read_remotely(seed)
        else:
            self._stream(seed)

    def _read_remotely(self, seed: int) -> None:
        """Seeded global batches over every clip of the shard indexes, decoded by Ray tasks."""
        from avf.data.shards import ShardIndex

        d, session = self.params.data, self.session
        self.refs = [(n, key) for n, sd in enumerate(self.shard_dirs) for key in ShardIndex.load(sd).keys]
        self.sampler = GlobalBatchSampler(
            len(self.refs), self.micro * session.world_size, session.rank, session.world_size, seed=seed,
            draws=self.samples_per_epoch,
        )  # fmt: skip
        source = BatchSource.of(self.shard_dirs, "pretrain", seed, d.clip, d.audio, d.augment, self.decode)
        self.remote = RemoteBatches(source, d.ingest_tasks, self.params.ray.address)

    def _stream(self, seed: int) -> None:
        """The shard stream, read by persistent DataLoader workers."""
        d, session = self.params.data, self.session
        self.stream = pretrain_stream(
            self.shard_dirs,
            clip=d.clip,
            audio=d.audio,
            augment=d.augment,
            seed=seed,
            rank=session.rank,
            world_size=session.world_size,
            samples_per_epoch=self.samples_per_epoch,
            num_workers=max(1, self.cfg.num_workers),
            batch_size=self.micro,
            decode=self.decode,
        )
        self.loader = persistent_loader(
            self.stream,
            self.cfg.num_workers,
            session.device,
            derive_seed(self.params.seed, "loader", session.rank),
            self.micro * item_bytes(d.clip, d.audio),
            session.local_world_size,
            batch_size=self.micro,
            drop_last=True,
            collate_fn=collate_clips,
        )

    def build_model(self) -> nn.Module:
        from avf.models.factory import pretrain_model

        return pretrain_model(self.params.model, self.cfg, self.params.masking)

    def steps_per_epoch(self) -> int:
        return self.samples_per_epoch // self.cfg.batch_size

    def effective_batch(self) -> int:
        return self.cfg.batch_size

    def train_batches(self, epoch: int, start_micro_step: int) -> Iterable[Any]:
        if self.remote is not None:
            yield from _remote_epoch(self.remote, self.sampler, self.refs, epoch, start_micro_step)
            return
        self.stream.set_epoch(epoch)
        n_micro = self.steps_per_epoch() * self.cfg.accum_steps
        for i, batch in enumerate(self.loader):
            if i >= n_micro:
                break
            if i < start_micro_step:
                continue
            yield batch

    def train_step(self, model: nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, StepLogs]:
        from avf.models.masking import sample_masks

        dev = self.session.device
        audio = batch["audio"]
        if "jpeg" in batch:
            size = self.params.data.clip.image_size
            frames, kept = decode_on_device(batch["jpeg"], batch["jpeg_sizes"], batch["crop"], size, dev)
            if len(kept) < len(batch["key"]):
                lost = [k for i, k in enumerate(batch["key"]) if i not in set(kept)]
                log.warning("left out of step %d, frames that do not decode: %s", step, ", ".join(lost))
                audio = audio[kept]
        else:
            frames = batch["video"].to(dev, non_blocking=True)
        video = to_model_input(frames)
        audio = audio.to(dev, non_blocking=True)
        gen = torch.Generator().manual_seed(derive_seed(self.params.seed, "masks", step, self.session.rank))
        masks = sample_masks(video.shape[0], self.params.masking, gen)  # the model moves what it needs
        out = model(video, audio, masks)
        logs = {
            "loss": out.loss.detach(),
            "loss_video": out.loss_video.detach(),
            "loss_audio": out.loss_audio.detach(),
            "loss_contrastive": out.loss_contrastive.detach(),
        }
        return out.loss, logs

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        return {}


class SupervisedTask:
    """Stage 2 (several datasets, one head each) or stage 3 (one dataset, the fine-tuning model)."""

    select_mode = "max"

    def __init__(
        self,
        params: Params,
        cfg: FinetuneConfig,
        datasets: Sequence[DatasetSplits],
        session: Session,
        init_weights: dict[str, torch.Tensor] | None,
        multi_head: bool,
    ) -> None:
        self.params, self.cfg, self.session = params, cfg, session
        self.compile_model = params.model.compile  # loop.fit compiles the training model
        self.datasets, self.multi_head, self.init_weights = list(datasets), multi_head, init_weights
        if not multi_head and len(self.datasets) != 1:
            raise ValueError("stage 3 fine-tunes on exactly one dataset")
        self.layer_decay = cfg.layer_decay
        first = self.datasets[0]
        self.is_regression = first.task == "regression"
        self.select_metric = cfg.select_metric if "/" in cfg.select_metric else f"val/{cfg.select_metric}"
        self.select_rule, self.select_epochs = cfg.select, cfg.select_epochs
        if self.select_metric.rsplit("/", 1)[-1].startswith(("mae", "mse")):  # errors: lower is better
            self.select_mode = "min"
        self.micro = _per_rank_micro(cfg.batch_size, cfg.accum_steps, session.world_size)
        # stage 2's epoch length may be set (intermediate.steps_per_epoch); stage 3's is one pass
        self._steps: int | None = getattr(cfg, "steps_per_epoch", None)
        d = params.data
        self.train_sets = [
            ClipDataset(
                ds.shard_dir, ds.train_keys, train=True, clip=d.clip, audio=d.audio, augment=d.augment, seed=params.seed
            )
            for ds in self.datasets
        ]
        self.train_set = torch.utils.data.ConcatDataset(self.train_sets)
        self.offsets = np.cumsum([0] + [len(s) for s in self.train_sets])
        weights = None
        if multi_head and len(self.datasets) > 1:  # per-sample weight = dataset weight spread over its clips
            weights = np.concatenate(
                [np.full(len(s), ds.weight / len(s)) for s, ds in zip(self.train_sets, self.datasets, strict=True)]
            )
        self.sampler = GlobalBatchSampler(
            len(self.train_set),
            cfg.batch_size // cfg.accum_steps,
            session.rank,
            session.world_size,
            seed=params.seed,
            weights=weights,
            draws=self.steps_per_epoch() * cfg.batch_size,  # whole steps: no micro-batch is loaded and dropped
        )
        self.refs = [(n, key) for n, s in enumerate(self.train_sets) for key in s.keys]  # train_set's order
        self.remote: RemoteBatches | None = None
        self.loader: torch.utils.data.DataLoader | None = None
        if d.ingest == "ray":
            dirs = [ds.shard_dir for ds in self.datasets]
            source = BatchSource.of(dirs, "finetune", params.seed, d.clip, d.audio, d.augment)
            self.remote = RemoteBatches(source, d.ingest_tasks, params.ray.address)
        else:
            self.loader = persistent_loader(
                self.train_set,
                cfg.num_workers,
                session.device,
                derive_seed(params.seed, "loader", session.rank),
                self.micro * item_bytes(d.clip, d.audio),
                session.local_world_size,
                batch_sampler=self.sampler,
            )
        self.mixup = AVMixup(cfg.mixup, cfg.cutmix, first.num_outputs, cfg.label_smoothing, mix_audio=cfg.mixup_audio)
        if multi_head and self.mixup.active:
            log.warning("mixup/cutmix is not applied in stage 2 (labels of different datasets do not mix)")
        self.eval_sets = {
            (ds.name, split): ClipDataset(
                ds.shard_dir, keys, train=False, clip=d.clip, audio=d.audio, augment=d.augment, seed=params.seed
            )
            for ds in self.datasets
            for split, keys in (("val", ds.val_keys), ("test", ds.test_keys))
            if keys
        }
        self.name_to_index = {ds.name: i for i, ds in enumerate(self.datasets)}

    # -- model -------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from avf.models import init_finetune_from_pretrain, model_name
        from avf.models.factory import finetune_model, multihead_model

        m = self.params.model
        if self.multi_head:
            model: nn.Module = multihead_model(m, {ds.name: ds.num_outputs for ds in self.datasets})
            target = model.backbone  # type: ignore[union-attr]
        else:
            model = finetune_model(m, self.datasets[0].num_outputs)
            target = model
        if self.init_weights is not None:
            report = init_finetune_from_pretrain(target, self.init_weights)
            loaded = len(target.state_dict()) - len(report["missing"])
            if report["unexpected"] or loaded == 0:
                raise ValueError(
                    f"the initial weights do not fit the {model_name('finetune', m.size)} backbone: {loaded} "
                    f"tensors loaded, {len(report['unexpected'])} unexpected (e.g. {report['unexpected'][:3]})"
                )
            log.info(
                "initialised backbone: %d tensors loaded, %d new, %d decoder tensors dropped",
                loaded,
                len(report["missing"]),
                len(report["dropped"]),
            )
        return model

    def steps_per_epoch(self) -> int:
        return self._steps or len(self.train_set) // self.cfg.batch_size

    def effective_batch(self) -> int:
        return self.cfg.batch_size

    # -- training ----------------------------------------------------------------------------------
    def train_batches(self, epoch: int, start_micro_step: int) -> Iterable[Any]:
        if self.remote is not None:
            yield from _remote_epoch(self.remote, self.sampler, self.refs, epoch, start_micro_step)
            return
        assert self.loader is not None
        for s in self.train_sets:
            s.set_epoch(epoch)
        self.sampler.set_epoch(epoch, start_micro_step)
        n_micro = self.steps_per_epoch() * self.cfg.accum_steps
        for i, batch in enumerate(self.loader):
            if start_micro_step + i >= n_micro:
                break
            yield batch

    def train_step(self, model: nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, StepLogs]:
        dev = self.session.device
        video = to_model_input(batch["video"].to(dev, non_blocking=True), batch["erase"])  # boxes stay on the host
        audio = batch["audio"].to(dev, non_blocking=True)
        labels = batch["label"].to(dev, non_blocking=True)
        if self.multi_head:
            return self._multi_head_step(model, video, audio, labels, batch["dataset"])
        if self.is_regression:
            loss = regression_loss(model(video, audio).float(), labels.float(), self.cfg.regression_loss)
            return loss, {"loss": loss.detach()}
        target = labels
        if self.mixup.active:
            rng = np.random.default_rng(derive_seed(self.params.seed, "mixup", step, self.session.rank))
            video, audio, target = self.mixup(video, audio, labels, rng)
        logits = model(video, audio)
        loss = classification_loss(logits.float(), target, self.cfg.label_smoothing)
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, {"loss": loss.detach(), "acc": acc}

    def _multi_head_step(
        self, model: nn.Module, video: torch.Tensor, audio: torch.Tensor, labels: torch.Tensor, names: Sequence[str]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        heads = model.module.heads if hasattr(model, "module") else model.heads
        tasks = {ds.name: ds.task for ds in self.datasets}
        return multi_head_loss(model(video, audio), heads, labels, names, tasks, self.cfg)

    # -- evaluation --------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module, dataset: Any, head: str | None = None) -> dict[str, Any]:
        """Average the test views of this rank's share of ``dataset`` and gather all ranks' outputs."""
        from avf.eval.predict import predict_views

        indices = shard_indices(len(dataset), self.session.rank, self.session.world_size)
        local = predict_views(
            model,
            dataset,
            indices,
            self.session.device,
            batch_size=self.micro,
            regression=self.is_regression,
            head=head,
            num_workers=self.cfg.num_workers,
            ranks_per_node=self.session.local_world_size,
        )
        parts = self.session.all_gather_object(local)
        return {k: np.concatenate([p[k] for p in parts]) for k in local}

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        from avf.eval.predict import score

        metrics: dict[str, float] = {}
        for (name, split), dataset in self.eval_sets.items():
            ds = self.datasets[self.name_to_index[name]]
            outputs = self.predict(model, dataset, head=name if self.multi_head else None)
            scores = score(outputs, ds.task, ds.num_outputs, ds.target_names)
            prefix = f"{split}/" if not self.multi_head else f"{split}/{name}/"
            metrics.update({prefix + k: v for k, v in scores.items()})
        if self.multi_head:  # the selection metric of stage 2: mean over datasets
            for split in ("val", "test"):
                key = self.select_metric.split("/", 1)[1]
                vals = [
                    metrics[f"{split}/{ds.name}/{key}"] for ds in self.datasets if f"{split}/{ds.name}/{key}" in metrics
                ]
                if vals:
                    metrics[f"{split}/{key}"] = float(np.mean(vals))
        return metrics
