"""Models (open_clip), the training loop, distributed training and utility evaluation.

    train.models      create_model / save_model / load_model, CPU presets (clipmem-tiny, ...)
    train.data        dataset folder -> in-memory Table; split_heldout(keys, frac, seed)
    train.config      TrainConfig (json-serializable), TrainResult (per-sample losses, csl)
    train.loop        train_clip(data, keys, config, out_dir, hooks...)
    train.losses      per-sample CLIP / SigLIP losses over the global batch
    train.augment     uint8 -> model input; random resized crop + flip on tensors
    train.distributed torchrun support (gloo on CPU, nccl on GPU)
    train.checkpoint  per-epoch checkpoint, resume, run outputs
    train.evaluate    retrieval, zero-shot, linear probe; encode_images / encode_texts
    train.prompts     zero-shot class names from labels or caption words
"""

import os

# OpenMP threads spin while waiting for work by default; on a machine shared with other processes (CI, several
# jobs on few cores) a spinning thread holds a core the others need and a step can take 10x longer. Passive
# waiting costs little when the machine is idle. Only effective if set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
