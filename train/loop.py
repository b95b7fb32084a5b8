"""The CLIP training loop, readable top to bottom.

One function, train_clip: seeded model init (same seed -> same initial weights for every model, as CLIPMem's
k-fold protocol needs), AdamW, linear warm-up + cosine decay, contrastive loss over the global batch, gradient
clipping, a checkpoint after each epoch (resume reproduces the uninterrupted run), and every sample's loss
recorded each time it is seen, from the training forward pass itself (cumulative sample loss, csl).

Randomness is derived from (seed, purpose, epoch or step), never from a running generator, so a resumed run,
a second run and a multi-process run all draw the same numbers.

Example:
    >>> import torch
    >>> from train.data import table_from_tensors
    >>> from train.config import TrainConfig
    >>> from train.loop import train_clip
    >>> table = table_from_tensors([f"{i}" for i in range(32)], torch.randint(0, 256, (32, 3, 64, 64),
    ...                            dtype=torch.uint8), [f"shape {i % 4}" for i in range(32)])
    >>> result = train_clip(table, config=TrainConfig(epochs=1, batch_size=16, warmup=1), progress=False)
    >>> len(result.step_losses), len(result.sample_losses["0"])
    (2, 1)
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from dataio.errors import UsageError
from train import checkpoint, distributed
from train.augment import crop_flip_params, to_model_input
from train.config import TrainConfig, TrainResult
from train.data import Table, load_table
from train.losses import per_sample_losses
from train.models import create_model, image_mean_std

MAX_LOGIT_SCALE = math.log(100)  # CLIP's cap on the learned temperature

CaptionAugment = Callable[[str, random.Random], str]


def train_clip(data, keys: Sequence[str] | None = None, config: TrainConfig | None = None,
               out_dir: str | Path | None = None, *, caption_augment: CaptionAugment | None = None,
               resume: bool = False, on_epoch_end: Callable[[int, dict], None] | None = None,
               progress: bool = True, run_info: dict | None = None,
               order_keys: Sequence[str] | None = None) -> TrainResult:
    """Train a CLIP model on `keys` of `data` (a Table, a dataset folder or a curate Dataset).

    order_keys: the keys the batch order is drawn over, `keys` among them (default: `keys`). A run on a
    subset then sees the batches a run on all of `order_keys` sees with the missing pairs dropped, step for
    step: removal compared with its baseline differs in the removed pairs, not in an unrelated order.
    caption_augment(caption, rng) -> caption is applied on the fly to the caption each sample contributes.
    With out_dir, a checkpoint is written after each epoch and the model, train_log.json and
    sample_losses.parquet at the end; resume=True continues from the checkpoint there.
    on_epoch_end(epoch, stats) is called after each epoch's checkpoint. run_info is added to the saved
    model's clipmem.json and to train_log.json (e.g. how the held-out split was made).
    """
    config = config or TrainConfig()
    if resume and out_dir is None:
        raise UsageError("resume needs the output folder of the interrupted run (--out)")
    world = distributed.init_distributed(config.device)
    if config.batch_size % world.world_size:
        raise UsageError(f"--batch-size {config.batch_size} must divide by the number of processes "
                         f"({world.world_size}): it is the global batch")
    if config.precision == "amp" and world.device.type != "cuda":
        raise UsageError("--precision amp (float16) needs a GPU; use amp_bf16 or fp32 on CPU")

    # Model: the same (name, seed) gives the same initial weights in every run and on every rank.
    model, tokenizer, image_size = create_model(config.model, config.pretrained, seed=config.seed,
                                                siglip=config.loss == "siglip", image_size=config.image_size)
    model.output_dict = True

    # Data: the image table in memory, captions tokenized once.
    table = data if isinstance(data, Table) else load_table(data, keys, image_size=image_size,
                                                            progress=progress and world.is_main)
    keys = list(keys) if keys is not None else list(table.keys)
    positions_in_keys = order_positions(keys, order_keys)
    rows = table.rows(keys)
    tokens, first_caption = table.tokens(tokenizer)
    caption_counts = first_caption[1:] - first_caption[:-1]
    mean, std = image_mean_std(model)
    steps_per_epoch = len(epoch_batches(len(positions_in_keys), config.batch_size, world.world_size, torch.arange(0)))
    if steps_per_epoch == 0 or len(keys) < 2 * world.world_size:
        raise UsageError(f"{len(keys)} training samples make no batch of at least 2 per process")
    total_steps = config.epochs * steps_per_epoch

    model = distributed.wrap_model(conv_layout(model.to(world.device)), world)
    input_layout = layout_of(model)
    optimizer = make_optimizer(distributed.unwrap(model), config)
    scaler = torch.amp.GradScaler("cuda") if config.precision == "amp" else None
    autocast = make_autocast(config.precision, world.device)

    loss_history = torch.full((config.epochs, len(keys)), math.nan)
    step_losses: list = []
    start_epoch = 0
    if resume:
        state = checkpoint.load_checkpoint(out_dir, config, keys)
        if state is not None:
            distributed.unwrap(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scaler is not None and state["scaler"]:
                scaler.load_state_dict(state["scaler"])
            start_epoch, loss_history, step_losses = state["epochs_done"], state["loss_history"], state["step_losses"]

    started, samples_done, step_seconds = time.perf_counter(), 0, []
    for epoch in range(start_epoch, config.epochs):
        model.train()
        order = torch.randperm(len(positions_in_keys), generator=seeded(config.seed, "order", epoch))
        batches = [kept_in_batch(batch, positions_in_keys, world.world_size)
                   for batch in epoch_batches(len(positions_in_keys), config.batch_size, world.world_size, order)]
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
                   disable=not (progress and world.is_main))
        epoch_started = time.perf_counter()
        for step_in_epoch, global_positions in enumerate(bar):
            # All but a few of this batch's pairs left out: the step is skipped, the schedule of later steps kept.
            if len(global_positions) == 0:
                continue
            step_started = time.perf_counter()
            step = epoch * steps_per_epoch + step_in_epoch
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config.lr, config.warmup, total_steps)

            # This rank's share of the global batch: images (augmented on the fly) and one caption each.
            positions = distributed.shard(global_positions, world)
            local_rows = rows[positions]
            crop = None
            if config.image_aug:  # drawn for the whole global batch, so every rank slices the same numbers
                crop = crop_flip_params(len(global_positions), seeded(config.seed, "crop", step))
                crop = distributed.shard(crop, world)
            images = to_model_input(table.images[local_rows], mean, std, image_size, crop, world.device)
            images = images.contiguous(memory_format=input_layout)
            texts = batch_tokens(table, tokenizer, tokens, first_caption, caption_counts, local_rows,
                                 [keys[p] for p in positions.tolist()], epoch, config, caption_augment)

            with autocast:
                out = model(images, texts.to(world.device))
            text_features = out["text_features"]
            if config.text_noise_sigma > 0:
                noise = torch.randn(len(global_positions), text_features.shape[1],
                                    generator=seeded(config.seed, "noise", step))
                text_features = add_text_noise(text_features, distributed.shard(noise, world), config.text_noise_sigma)
            sample_loss = per_sample_losses(out["image_features"], text_features, out["logit_scale"],
                                            out.get("logit_bias"), config.loss, world.rank, world.world_size)
            loss = sample_loss.mean()

            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            with torch.no_grad():
                distributed.unwrap(model).logit_scale.clamp_(0, MAX_LOGIT_SCALE)

            # Record every sample's loss of this step, from the logits the step already computed.
            global_loss = distributed.gather_rows(sample_loss.detach().float(), world).cpu()
            loss_history[epoch, global_positions] = global_loss
            step_losses.append(float(global_loss.mean()))
            samples_done += len(global_positions)
            step_seconds.append(time.perf_counter() - step_started)
            rate = (step_in_epoch + 1) * config.batch_size / max(time.perf_counter() - epoch_started, 1e-9)
            bar.set_postfix(loss=f"{step_losses[-1]:.3f}", samples_s=f"{rate:.0f}")

        if out_dir is not None and world.is_main:
            checkpoint.save_checkpoint(out_dir, distributed.unwrap(model), optimizer, scaler, epoch + 1,
                                       loss_history, step_losses, config, keys)
        distributed.barrier(world)
        if on_epoch_end is not None:
            seen = loss_history[epoch][~torch.isnan(loss_history[epoch])]
            on_epoch_end(epoch, {"mean_loss": float(seen.mean()), "steps": len(step_losses)})

    seconds = time.perf_counter() - started
    # Back in the default layout: scores from this model must equal those from the same model read back from disk.
    final = distributed.unwrap(model).eval().to(memory_format=torch.contiguous_format)
    final.output_dict = False  # open_clip's default, as for a model read back with load_model
    result = TrainResult(model=final, tokenizer=tokenizer, config=config, keys=keys, loss_history=loss_history,
                         step_losses=step_losses, step_seconds=step_seconds, seconds=seconds,
                         samples_per_s=samples_done / max(seconds, 1e-9))
    if out_dir is not None and world.is_main:
        checkpoint.write_run_outputs(out_dir, result, {"world_size": world.world_size, **(run_info or {})})
    distributed.barrier(world)
    return result


def spatial_convs(model: torch.nn.Module) -> list:
    """The model's convolutions that slide over the image (not 1x1, not a ViT's patch embedding)."""
    return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != m.stride]


def conv_layout(model: torch.nn.Module) -> torch.nn.Module:
    """The model in channels-last memory where its image tower has convolutions: a ResNet tower's training step
    runs about 1.2x faster on CPU that way (clipmem-tiny, batch 128, 64 px), with the same arithmetic; a ViT
    tower is left as it is."""
    return model.to(memory_format=torch.channels_last) if spatial_convs(model) else model


def layout_of(model: torch.nn.Module) -> torch.memory_format:
    """The memory format the model's convolution weights are in (conv_layout), for its input batches. Judged on
    a spatial convolution: a 1x1 kernel's weight is contiguous in both formats."""
    convs = spatial_convs(model)
    if convs and not convs[0].weight.is_contiguous() and convs[0].weight.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def seeded(seed: int, purpose: str, index: int) -> torch.Generator:
    """A generator for one purpose at one epoch/step, independent of everything drawn before it."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)


def order_positions(keys: list, order_keys: Sequence[str] | None) -> torch.Tensor:
    """Per key of `order_keys`, its position in `keys` (-1 where it is not trained on); identity without them.

    >>> order_positions(["b", "d"], ["a", "b", "c", "d"]).tolist()
    [-1, 0, -1, 1]
    """
    if order_keys is None:
        return torch.arange(len(keys))
    index = {key: i for i, key in enumerate(keys)}
    missing = len(index.keys() - set(order_keys))
    if missing:
        raise UsageError(f"{missing} training keys are not among the keys the batch order is drawn over")
    return torch.tensor([index.get(key, -1) for key in order_keys], dtype=torch.long)


def kept_in_batch(batch: torch.Tensor, positions_in_keys: torch.Tensor, world_size: int) -> torch.Tensor:
    """A batch of `order_keys` positions as positions in the trained keys: the pairs not trained on dropped,
    cut to a multiple of the world size, and empty below 2 per process (no negatives for the loss).

    >>> kept_in_batch(torch.tensor([0, 1, 2, 3]), torch.tensor([-1, 0, -1, 1]), 1).tolist()
    [0, 1]
    """
    kept = positions_in_keys[batch]
    kept = kept[kept >= 0]
    usable = len(kept) - len(kept) % world_size
    return kept[:usable] if usable >= 2 * world_size else kept[:0]


def epoch_batches(count: int, batch_size: int, world_size: int, order: torch.Tensor) -> list:
    """Global batches of positions in `order`; the last partial batch is cut to a multiple of the world size
    (and dropped below 2 per process, where a contrastive loss has no negatives)."""
    full, rest = divmod(count, batch_size)
    sizes = [batch_size] * full
    usable = rest - rest % world_size
    if usable >= 2 * world_size:
        sizes.append(usable)
    if len(order) == 0:
        return sizes
    return list(torch.split(order[: sum(sizes)], sizes))


def lr_at(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warm-up to `peak` over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * peak * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on gains, biases, norms and the temperature (as open_clip's trainer)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exempt else decay).append(param)
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": config.wd}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps)


def make_autocast(precision: str, device: torch.device):
    if precision == "amp_bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "amp":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def add_text_noise(text_features: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Captured by Captions (ICLR 2025) mitigation: Gaussian noise on the text embedding, training only.

    Added to the L2-normalized embedding and *not* re-normalized. The paper adds N(0, sigma^2) noise to the text
    embedding during training and describes no re-projection; without one, each logit u.(v + n) moves by
    u.n ~ N(0, sigma^2) whatever the embedding width, so sigma keeps one meaning across models (0.15 is the
    paper's sweet spot, 0.3 hurts). Re-normalizing would shrink the signal by 1/sqrt(1 + sigma^2 * dim)
    instead, which for dim 512 and sigma 0.15 leaves under a third of it.
    """
    return text_features + sigma * noise.to(text_features.device, text_features.dtype)


def batch_tokens(table: Table, tokenizer, tokens: torch.Tensor, first_caption: torch.Tensor,
                 caption_counts: torch.Tensor, local_rows: torch.Tensor, local_keys: list, epoch: int,
                 config: TrainConfig, caption_augment: CaptionAugment | None) -> torch.Tensor:
    """One caption per sample: the primary, or one drawn per epoch when caption sampling is on; augmented on
    the fly (re-tokenized) when a caption_augment callable is given, else taken from the token cache."""
    choice = torch.zeros(len(local_rows), dtype=torch.long)
    if config.caption_sampling:
        counts = caption_counts[local_rows].tolist()
        choice = torch.tensor([random.Random(f"{config.seed}:caption:{epoch}:{key}").randrange(n) if n > 1 else 0
                               for key, n in zip(local_keys, counts)], dtype=torch.long)
    if caption_augment is None:
        return tokens[first_caption[local_rows] + choice]
    texts = [caption_augment(table.captions[row][j], random.Random(f"{config.seed}:augment:{epoch}:{key}"))
             for row, j, key in zip(local_rows.tolist(), choice.tolist(), local_keys)]
    return tokenizer(texts)
