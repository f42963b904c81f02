"""The PyTorch worker of the training-step stage: the same network in plain `torch.nn`, the reference.

    python -m benchmarks.torch_worker --batch_sizes 32,128

One process per measurement (see `benchmarks.step_workers`): it times an SGD
momentum step of `torch_alexnet` on one fixed random batch held in memory and a
large float32 `torch.mm` before and after the steps, and prints one JSON result
line; without PyTorch installed the result says so and no figure is made up.
"""
import sys

from benchmarks import common, step_workers

try:  # optional (the [bench] extra): without it the stage reports PyTorch as not installed
    import torch
    from torch import nn
except ImportError:
    torch = nn = None


def torch_alexnet(num_classes=1000, image_size=227):
    """The same single-tower AlexNet in plain `torch.nn` (channels-first, as PyTorch users write it).

    LRN: `torch.nn.LocalResponseNorm` divides alpha by the window size (Caffe's
    convention), so alpha = 5 x 1e-4 gives the paper's k=2, n=5, alpha=1e-4, beta=0.75.
    Weights N(0, 0.01), biases 1 in conv2, conv4, conv5, fc6, fc7 (the paper's init).

    Args:
      num_classes: width of fc8.
      image_size: input side (fixes fc6's input width).

    Returns:
      A `torch.nn.Sequential` from (B, 3, image_size, image_size) to logits.
    """
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    features = [
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Flatten(),
    ]  # fmt: skip
    with torch.no_grad():  # fc6's input width: what the convolutions make of one image of this size
        flat = nn.Sequential(*features)(torch.zeros(1, 3, image_size, image_size)).shape[1]
    net = nn.Sequential(
        *features,
        nn.Linear(flat, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, num_classes),
    )  # fmt: skip
    bias_one = {4, 10, 12, 16, 19}  # conv2, conv4, conv5, fc6, fc7 (their places in `net`)
    with torch.no_grad():
        for index, layer in enumerate(net):
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.weight.normal_(0.0, 0.01)
                layer.bias.fill_(1.0 if index in bias_one else 0.0)
    return net


def torch_matmul_gflops(n, warmup, repeats):
    """GFLOP/s of an n x n float32 `torch.mm`."""
    a = torch.rand(n, n)
    b = torch.rand(n, n)
    return common.rate_stats(2 * n**3 / 1e9, common.time_runs(lambda: torch.mm(a, b), warmup, repeats))


def torch_step_rates(batch_size, image_size, num_classes, warmup, repeats, steps, channels_last=False):
    """Images/s of a PyTorch SGD momentum training step of `torch_alexnet` on one fixed random batch."""
    torch.manual_seed(0)
    net = torch_alexnet(num_classes, image_size).train()
    x = torch.rand(batch_size, 3, image_size, image_size)
    y = torch.randint(0, num_classes, (batch_size,))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
    # Coupled weight decay on weights only, as build_alexnet's kernel regularizer.
    optimizer = torch.optim.SGD(
        [{"params": weights, "weight_decay": 5e-4}, {"params": biases, "weight_decay": 0.0}], lr=0.01, momentum=0.9
    )
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
        return loss.item()

    return common.rate_stats(batch_size * steps, common.time_runs(run, warmup, repeats))


def measure(args):
    """The PyTorch worker's measurements, or {'unavailable': ...} when PyTorch is not installed."""
    if torch is None:
        return {"framework": "torch", "unavailable": step_workers.TORCH_MISSING}
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {
        "framework": "torch",
        "version": "PyTorch %s" % torch.__version__,
        "onednn": bool(torch.backends.mkldnn.is_available()),
        "channels_last": args.channels_last,
        "threads": torch.get_num_threads(),
        "batches": {},
    }
    before = {"torch.mm": torch_matmul_gflops(args.matmul_size, 1, args.repeats)}
    for batch_size in args.batch_sizes:
        result["batches"][str(batch_size)] = torch_step_rates(
            batch_size, args.image_size, args.num_classes, args.warmup, args.repeats, args.steps, args.channels_last
        )
    result["matmul"] = common.faster_gemms(before, {"torch.mm": torch_matmul_gflops(args.matmul_size, 1, args.repeats)})
    result["parameters"] = sum(p.numel() for p in torch_alexnet(args.num_classes, args.image_size).parameters())
    return result


def build_parser():
    """The PyTorch worker's flags: `step_workers.worker_parser`'s and its own."""
    parser = step_workers.worker_parser("python -m benchmarks.torch_worker", __doc__.split("\n")[0])
    parser.add_argument("--channels_last", action="store_true", help="channels_last memory format")
    return parser


def main(argv=None):
    """Worker: measures the PyTorch step and prints one JSON result line."""
    return step_workers.worker_main(build_parser(), measure, argv)


if __name__ == "__main__":
    sys.exit(main())
