"""Next-token training and held-out scoring of one student, and the diagnostics at step 0.

One model object is compiled once (torch.compile, static shapes) and every init's weights are copied into it, so
the compiled graphs are reused by every run; the optimizer is made afresh for each run. Mixed precision: float32
weights and optimizer state, bfloat16 matmuls (torch.autocast), the loss in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Settings:
    steps: int
    batch_size: int  # sequences per step
    lr: float
    warmup: int  # linear warm-up steps from 0, then linear decay to 0 at the last step
    eval_every: int
    weight_decay: float = 0.1  # AdamW, on every parameter (as transformers' Trainer does by default)
    betas: tuple[float, float] = (0.9, 0.95)  # the usual for language models
    clip: float = 1.0  # gradient norm clipping


class Runner:
    """Holds the (compiled) model that every run trains, and the fixed data: train sequences and held-out batches."""

    def __init__(self, model: torch.nn.Module, held_out: torch.Tensor, eval_batch: int, compile: bool) -> None:
        self.model = model
        self.forward: Callable[..., object] = torch.compile(model, dynamic=False) if compile else model
        self.held_out = held_out  # [sequences, length] token ids
        self.eval_batch = eval_batch

    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Copy an init's weights into the model (every name must match: strict)."""
        with torch.no_grad():
            self.model.load_state_dict(state, strict=True)

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over every position but the last, in float32."""
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = self.forward(input_ids=ids).logits  # type: ignore[attr-defined]  # [batch, length, vocab]
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())

    def evaluate(self) -> float:
        """Held-out loss: the mean over every held-out token prediction (equal-size batches)."""
        self.model.eval()
        with torch.no_grad():
            losses = [self.loss(batch).item() for batch in self.held_out.split(self.eval_batch)]
        self.model.train()
        return sum(losses) / len(losses)

    def train(self, batches: torch.Tensor, settings: Settings, log: Callable[[str], None] = print) -> dict:
        """AdamW over `batches` ([steps, batch, length]); held-out loss at step 0, every `eval_every` steps and at
        the end. Returns {"curve": {"steps", "loss"}, "train_loss": [...], "grad_norm": [...]}."""
        s = settings
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=s.lr, betas=s.betas, weight_decay=s.weight_decay, fused=True
        )

        def factor(step: int) -> float:  # step 0 is the first update
            if step < s.warmup:
                return (step + 1) / (s.warmup + 1)
            return max(0.0, (s.steps - step) / (s.steps - s.warmup))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        curve = {"steps": [0], "loss": [self.evaluate()]}
        log(f"    step 0: held-out {curve['loss'][0]:.3f}")
        train_loss, grad_norm = [], []
        self.model.train()
        for step, ids in enumerate(batches[: s.steps], start=1):
            loss = self.loss(ids)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm.append(float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.clip)))
            optimizer.step()
            schedule.step()
            train_loss.append(loss.item())
            if step % s.eval_every == 0 or step == s.steps:
                curve["steps"].append(step)
                curve["loss"].append(self.evaluate())
                log(f"    step {step}: train {train_loss[-1]:.3f}, held-out {curve['loss'][-1]:.3f}")
        return {"curve": curve, "train_loss": train_loss, "grad_norm": grad_norm}


def diagnose(model: torch.nn.Module, ids: torch.Tensor) -> dict:
    """Scale of a student at init, on held-out sequences, in float32: the root mean square of the residual stream
    after each layer and after the final norm, and of the logits; the entropy of the predicted distribution."""
    rms: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, _args: object, output: object) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        rms.append(hidden.float().pow(2).mean().sqrt())  # type: ignore[union-attr]

    inner = model.model  # type: ignore[attr-defined]
    handles = [layer.register_forward_hook(hook) for layer in inner.layers]
    handles.append(inner.norm.register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()  # type: ignore[operator]
    for handle in handles:
        handle.remove()
    model.train()
    log_p = logits.log_softmax(-1)
    return {
        "residual_rms": [float(x) for x in rms[:-1]],
        "final_norm_rms": float(rms[-1]),
        "logits_std": float(logits.std()),
        "entropy": float(-(log_p.exp() * log_p).sum(-1).mean()),
    }


def largest_dims(model: torch.nn.Module, ids: torch.Tensor, after_layer: int, count: int) -> list[dict]:
    """The `count` residual-stream dims with the largest root mean square after layer `after_layer` (0-based), and
    their RMS: a pretrained LLM concentrates huge activations in a few dims (the teacher's "massive activations")."""
    model.eval()
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[after_layer + 1]  # type: ignore[operator]
    model.train()
    rms = hidden.float().pow(2).mean((0, 1)).sqrt()
    top = rms.topk(count)
    return [{"dim": int(i), "rms": float(v)} for i, v in zip(top.indices, top.values, strict=True)]
