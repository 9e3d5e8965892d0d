"""Fashion-MNIST, written the way DeepSpeed's own examples are written
(DeepSpeedExamples/training/cifar/cifar10_deepspeed.py). The only change for
zerotrain is the import line:

    import zerotrain as deepspeed        # was: import deepspeed

Run it on 2 ranks (Debian's dataset-fashion-mnist):

    torchrun --nproc-per-node=2 examples/python/fashion_mnist.py \
        --deepspeed --deepspeed_config configs/fashion_mnist_zero2.json --epochs 2
"""

import argparse
import gzip
import os

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import zerotrain as deepspeed


def add_argument():
    parser = argparse.ArgumentParser(description="Fashion-MNIST")
    parser.add_argument("--local_rank", type=int, default=-1, help="local rank passed from distributed launcher")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--save", default="", help="checkpoint directory (saved after each epoch)")
    parser.add_argument("--min-accuracy", type=float, default=0.0, help="exit non-zero below this test accuracy")
    parser = deepspeed.add_config_arguments(parser)
    return parser.parse_args()


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(root, split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    labels = read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    images = (images - 0.2860) / 0.3530
    return torch.utils.data.TensorDataset(torch.from_numpy(images).reshape(-1, 784), torch.from_numpy(labels))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def main():
    args = add_argument()
    deepspeed.init_distributed()
    torch.manual_seed(0)

    trainset = load(args.data, "train")
    testset = load(args.data, "test")
    net = Net()
    parameters = filter(lambda p: p.requires_grad, net.parameters())
    model_engine, optimizer, trainloader, __ = deepspeed.initialize(
        args=args, model=net, model_parameters=parameters, training_data=trainset)

    local_device = deepspeed.accelerator.get_accelerator().device_name(model_engine.local_rank)
    local_rank = model_engine.local_rank
    target_dtype = None
    if model_engine.bfloat16_enabled():
        target_dtype = torch.bfloat16
    elif model_engine.fp16_enabled():
        target_dtype = torch.half

    criterion = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        trainloader.sampler.set_epoch(epoch)
        running_loss = 0.0
        for i, data in enumerate(trainloader):
            inputs, labels = data[0].to(local_device), data[1].to(local_device)
            if target_dtype is not None:
                inputs = inputs.to(target_dtype)
            outputs = model_engine(inputs)
            loss = criterion(outputs.float(), labels)
            model_engine.backward(loss)
            model_engine.step()
            running_loss += loss.item()
            if local_rank == 0 and i % 500 == 499:
                print(f"[{epoch + 1 : d}, {i + 1 : 5d}] loss: {running_loss / 500 : .3f}", flush=True)
                running_loss = 0.0
        if args.save:
            model_engine.save_checkpoint(args.save, client_state={"epoch": epoch + 1})

    if args.save:
        # Resume check: load the last checkpoint back and read its client state.
        path, client_state = model_engine.load_checkpoint(args.save)
        if local_rank == 0:
            print(f"loaded {path}, epoch {client_state['epoch']}", flush=True)

    # Evaluation through the original module, as DeepSpeed's examples do.
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in torch.utils.data.DataLoader(testset, batch_size=1000):
            images = images.to(local_device)
            if target_dtype is not None:
                images = images.to(target_dtype)
            predicted = net(images).argmax(dim=1).cpu()
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    accuracy = correct / total
    if local_rank == 0:
        print(f"Accuracy of the network on the 10000 test images: {100 * accuracy:.2f} %", flush=True)
    dist.barrier()
    if accuracy < args.min_accuracy:
        raise SystemExit(f"test accuracy {accuracy:.4f} is below --min-accuracy {args.min_accuracy}")


if __name__ == "__main__":
    main()
