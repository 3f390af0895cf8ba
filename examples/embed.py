"""Load a student written by `wsel init` (a BERT sentence encoder) and embed two sentences.

    python examples/embed.py demo-out
"""

from __future__ import annotations

import sys

import torch
from transformers import AutoModel, AutoTokenizer

SENTENCES = ["A small model starts from a large one.", "The student is initialized with the teacher's weights."]


def embed(folder: str) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # [sentences, tokens, hidden]
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)  # mean pooling: [sentences, hidden]


if __name__ == "__main__":
    vectors = embed(sys.argv[1] if len(sys.argv) > 1 else "demo-out")
    similarity = torch.nn.functional.cosine_similarity(vectors[0], vectors[1], dim=0)
    print(f"student embeddings: {tuple(vectors.shape)}, cosine similarity of the two sentences: {similarity:.3f}")
