"""The toy text encoder: a BPE tokenizer trained offline on the captions, and a tiny CLIPTextModel.

The tokenizer is saved in CLIP's own format (vocab.json + merges.txt), so the pipeline loads it as a
`CLIPTokenizer`, exactly as Stable Diffusion's. The encoder is pretrained to name the scene's slots
from the caption (one linear head per slot on the pooled output), so its hidden states carry the
attributes the denoisers condition on; the denoisers then treat it as frozen, as SD does with CLIP.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from diffscale.toyworld.scenes import SLOTS
from diffscale.toyworld.training import train

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def fit_tokenizer(captions: list[str], max_length: int) -> CLIPTokenizer:
    """Byte-pair encoding learned from the captions, with CLIP's end-of-word marker."""
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    alphabet = sorted({ch for caption in captions for ch in caption if not ch.isspace()})
    trainer = trainers.BpeTrainer(
        vocab_size=256, special_tokens=[BOS, EOS], initial_alphabet=alphabet, end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator(sorted(set(captions)), trainer)
    model = json.loads(bpe.to_str())["model"]
    merge_pairs = [m if isinstance(m, list) else m.split(" ") for m in model["merges"]]
    # The trainer numbers its alphabet in hash order; renumber so the same captions give the same ids.
    merged = ["".join(pair) for pair in merge_pairs]
    alphabet = sorted(set(model["vocab"]) - set(merged) - {BOS, EOS})
    ordered = [BOS, EOS] + alphabet + list(dict.fromkeys(merged))
    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = Path(tmp, "vocab.json"), Path(tmp, "merges.txt")
        vocab.write_text(json.dumps({token: i for i, token in enumerate(ordered)}))
        merges.write_text("#version: 0.2\n" + "\n".join(" ".join(pair) for pair in merge_pairs) + "\n")
        return CLIPTokenizer(str(vocab), str(merges), model_max_length=max_length, pad_token=EOS)


def build_encoder(tokenizer: CLIPTokenizer, width: int, layers: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // 16),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS),
        pad_token_id=tokenizer.convert_tokens_to_ids(EOS),
    )
    return CLIPTextModel(config)


def tokenize(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """Pad to the model's length, as the Stable Diffusion pipeline does."""
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def fit(captions: list[str], labels: np.ndarray, width: int, layers: int, steps: int, batch_size: int, lr: float, seed: int):
    torch.manual_seed(seed)
    tokenizer = fit_tokenizer(captions, max_length=16)
    encoder = build_encoder(tokenizer, width, layers)
    heads = torch.nn.ModuleList(torch.nn.Linear(width, len(classes)) for classes in SLOTS.values())
    ids = tokenize(tokenizer, captions)
    targets = torch.from_numpy(labels)

    def loss(idx):
        pooled = encoder(ids[idx]).pooler_output
        return sum(torch.nn.functional.cross_entropy(head(pooled), targets[idx, k]) for k, head in enumerate(heads))

    params = list(encoder.parameters()) + list(heads.parameters())
    losses, ledger = train(params, loss, len(captions), steps, batch_size, lr, seed, desc="text encoder")
    with torch.no_grad():
        pooled = encoder(ids[:1024]).pooler_output
        accuracy = torch.stack([head(pooled).argmax(-1) == targets[:1024, k] for k, head in enumerate(heads)]).all(0)
    report = {"slot_accuracy": float(accuracy.float().mean()), "final_loss": float(np.mean(losses[-20:]))}
    return tokenizer, encoder.eval(), report, ledger


def save(tokenizer: CLIPTokenizer, encoder: CLIPTextModel, out: Path) -> None:
    tokenizer.save_pretrained(out / "tokenizer")
    encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
