#!/usr/bin/env python3
"""The PyTorch baseline for e2e_bench's GPU rows: train_gpt's architecture
(examples/train_gpt/gpt.h: pre-norm blocks, causal scaled-dot-product
attention, 4x GELU-tanh MLP, head tied to the token embedding) trained from
PyTorch with torch.optim.AdamW(fused=True), as a PyTorch user would: fp32
parameters under torch.autocast(bf16). Prints tokens/s and MFU.

    python3 benchmarks/e2e/pytorch_gpt.py --device cuda --layers 12 --width 768 --heads 12 \\
        --context 1024 --batch 8 --steps 20 [--peak-tflops 989.4]
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.fc_out = nn.Linear(4 * width, width)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.fc_out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, vocab, context, layers, heads, width):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        # GPT-2's initialisation, as gpt::GptImpl::reset_parameters.
        for name, p in self.named_parameters():
            if "ln" in name:
                continue
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif name.endswith(("proj.weight", "fc_out.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, tokens):
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak for MFU (0: not printed)")
    a = p.parse_args()

    torch.manual_seed(1)
    vocab = 256
    model = Gpt(vocab, a.context, a.layers, a.heads, a.width).to(a.device)
    params = sum(q.numel() for q in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1,
                            fused=a.device != "cpu")
    x = torch.randint(0, vocab, (a.batch, a.context + 1), device=a.device)
    inputs, targets = x[:, :-1], x[:, 1:]

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=torch.device(a.device).type, dtype=torch.bfloat16):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), targets.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    def sync():
        if a.device != "cpu":
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    seconds = (time.perf_counter() - start) / a.steps
    tokens = a.batch * a.context / seconds
    flops_per_token = 6 * params + 12 * a.layers * a.width * a.context  # as gpt::GptConfig::flops_per_token
    tflops = tokens * flops_per_token / 1e12
    mfu = f", MFU {100 * tflops / a.peak_tflops:.1f}%" if a.peak_tflops > 0 else ""
    print(f"PyTorch AdamW(fused={a.device != 'cpu'}), autocast bf16: {params / 1e6:.2f}M parameters, "
          f"{seconds * 1e3:.2f} ms/step, {tokens:.0f} tokens/s, {tflops:.2f} TFLOPs{mfu}, "
          f"loss {loss.item():.4f}")
    assert math.isfinite(loss.item())


if __name__ == "__main__":
    main()
