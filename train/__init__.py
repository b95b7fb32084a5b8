"""Models (open_clip), the training loop, distributed training and utility evaluation.

    train.train       train(data, out, ...): a model on a dataset folder, applying its mitigation.json
    train.models      create_model / save_model / load_model, CPU presets (clipmem-tiny, ...)
    train.data        dataset folder -> in-memory Table; split_heldout(keys, frac, seed)
    train.config      TrainConfig (json-serializable), TrainResult (per-sample losses, csl)
    train.loop        train_clip(data, keys, config, out_dir, hooks...)
    train.losses      per-sample CLIP / SigLIP losses over the global batch
    train.augment     uint8 -> model input; random resized crop + flip on tensors
    train.eda         EDA caption augmentation (WordNet synonyms, insertion, swap, deletion)
    train.wordnet     WordNet for nltk, offline (Debian's files copied into an nltk data folder)
    train.distributed torchrun support (gloo on CPU, nccl on GPU)
    train.checkpoint  per-epoch checkpoint, resume, run outputs
    train.evaluate    retrieval, zero-shot, linear probe; encode_images / encode_texts
    train.prompts     zero-shot class names from labels or caption words
"""

import dataio  # noqa: F401  (sets the OpenMP policy before torch loads)
from train.run import TrainRun, train  # noqa: E402

__all__ = ["train", "TrainRun"]
