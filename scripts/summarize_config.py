"""Prints the settings that matter most from `zerotrain config check` output (stdin)."""
import json
import sys

c = json.load(sys.stdin)
z = c["zero_optimization"]
world = c["train_batch_size"] // (c["train_micro_batch_size_per_gpu"] * c["gradient_accumulation_steps"])
print(f"  batch: {c['train_micro_batch_size_per_gpu']} per rank x {c['gradient_accumulation_steps']} "
      f"accumulation steps x {world} ranks = {c['train_batch_size']}")
precision = "fp16" if c["fp16"]["enabled"] else "bf16" if c["bf16"]["enabled"] else "fp32"
print(f"  precision: {precision}, gradients reduced in {c['communication_data_type']}, "
      f"clipped at norm {c['gradient_clipping']}")
print(f"  ZeRO stage {z['stage']}: overlap_comm={z['overlap_comm']}, "
      f"reduce_bucket_size={z['reduce_bucket_size']:,} elements")
if "optimizer" in c:
    print(f"  optimizer: {c['optimizer']['type']} {c['optimizer']['params']}")
if "scheduler" in c:
    print(f"  scheduler: {c['scheduler']['type']} {c['scheduler']['params']}")
