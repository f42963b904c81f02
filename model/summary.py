"""Per-layer table of AlexNet: output shape, parameters and multiply-accumulates.

    python -m model.summary                 # the paper's single-tower network at 227x227
    python -m model.summary --two_tower     # the paper's two-GPU connectivity

Multiply-accumulates (MACs) are counted for one image in the forward pass, for
convolutions and fully-connected layers only (LRN, pooling and bias adds are
comparatively negligible). A training step costs about 3x the forward MACs,
and 1 MAC = 2 FLOPs.
"""
import argparse
import sys

from keras import layers

from model.alexnet import TowerConv2D, build_alexnet


def layer_macs(layer):
    """Forward multiply-accumulates per image of one conv or dense layer (0 for others)."""
    if isinstance(layer, layers.Conv2D):
        _, h, w, c_out = layer.output.shape
        kh, kw = layer.kernel_size
        c_in_per_group = layer.kernel.shape[2]
        return h * w * c_out * kh * kw * c_in_per_group
    if isinstance(layer, layers.Dense):
        return layer.kernel.shape[0] * layer.kernel.shape[1]
    return 0


def layer_kind(layer):
    if isinstance(layer, (layers.Conv2D, TowerConv2D)):
        return "conv"
    if isinstance(layer, layers.Dense):
        return "fc"
    return ""


def layer_table(model):
    """Rows (name, output_shape, params, macs, kind) for every layer of `model`."""
    rows = []
    for layer in model.layers:
        shape = tuple(layer.output.shape[1:])
        rows.append((layer.name, shape, layer.count_params(), layer_macs(layer), layer_kind(layer)))
    return rows


def totals(rows):
    """{'conv': (params, macs), 'fc': (params, macs), 'all': (params, macs)}."""
    out = {}
    for kind in ("conv", "fc"):
        out[kind] = (sum(r[2] for r in rows if r[4] == kind), sum(r[3] for r in rows if r[4] == kind))
    out["all"] = (sum(r[2] for r in rows), sum(r[3] for r in rows))
    return out


def format_table(rows):
    lines = ["%-10s %-18s %14s %16s" % ("layer", "output shape", "parameters", "MACs/image")]
    lines.append("-" * len(lines[0]))
    for name, shape, params, macs, _ in rows:
        lines.append("%-10s %-18s %14s %16s" % (name, "x".join(str(d) for d in shape), f"{params:,}", f"{macs:,}"))
    lines.append("-" * len(lines[0]))
    t = totals(rows)
    all_params, all_macs = t["all"]
    for kind, label in (("conv", "convolutional"), ("fc", "fully-connected")):
        params, macs = t[kind]
        lines.append(
            "%-15s %14s parameters (%5.1f%%) %16s MACs (%5.1f%%)"
            % (label, f"{params:,}", 100.0 * params / all_params, f"{macs:,}", 100.0 * macs / all_macs)
        )
    lines.append("%-15s %14s parameters          %16s MACs" % ("total", f"{all_params:,}", f"{all_macs:,}"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--image_size", type=int, default=227)
    parser.add_argument("--two_tower", action="store_true", help="the paper's two-GPU connectivity")
    args = parser.parse_args(argv)
    try:
        model = build_alexnet(num_classes=args.num_classes, image_size=args.image_size, two_tower=args.two_tower)
    except ValueError as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    rows = layer_table(model)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
