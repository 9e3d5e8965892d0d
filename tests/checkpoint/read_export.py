"""Reads the files zerotrain exported (tests/checkpoint/reshard_test.cpp) with
the ecosystem's own readers: safetensors, and torch.load with weights_only.
Exits non-zero, saying what differs, unless every reader sees the same
weights as the live module that save_16bit_model wrote."""
import sys

import torch
from safetensors.torch import load_file

d = sys.argv[1]
live = torch.load(f"{d}/live_model.bin", weights_only=True)
exported = load_file(f"{d}/model.safetensors")
pickled = torch.load(f"{d}/model.pt", weights_only=True)
bf16 = load_file(f"{d}/model_bf16.safetensors")

problems = []
for name, files in (("safetensors", exported), ("torch", pickled), ("bf16", bf16)):
    if set(files) != set(live):
        problems.append(f"{name}: keys {sorted(files)} != {sorted(live)}")
for key, want in live.items():
    for name, got in (("safetensors", exported.get(key)), ("torch", pickled.get(key))):
        if got is None or got.dtype != torch.float32 or not torch.equal(got, want):
            problems.append(f"{name}: {key} differs from the live module")
    got = bf16.get(key)
    if got is None or got.dtype != torch.bfloat16 or not torch.equal(got, want.to(torch.bfloat16)):
        problems.append(f"bf16: {key} is not the fp32 weights rounded to bf16")
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"read_export.py: {len(live)} tensors agree across safetensors, torch.load and the live module")
