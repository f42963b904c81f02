"""PNG plots of per-epoch curves (matplotlib's Agg backend: no display needed)."""
import matplotlib

matplotlib.use("Agg")  # before pyplot: servers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_curves(path, curves, ylabel, title, target=None, xlabel="Epochs"):
    """Plots curves of (epoch, value) points into a PNG.

    Args:
      path: output .png path.
      curves: list of dicts {"label": str or None (no legend entry), "points": [(epoch, value)], "style":
        matplotlib line style such as "-" or "--" (default "-"), "color": optional}.
      ylabel, title, xlabel: axis labels and title.
      target: draw a dotted horizontal line at this value (for example the
        target training error), or None.

    Returns:
      path.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    try:
        for curve in curves:
            xs = [p[0] for p in curve["points"]]
            ys = [p[1] for p in curve["points"]]
            ax.plot(xs, ys, curve.get("style", "-"), color=curve.get("color"), label=curve["label"], linewidth=1.8)
        if target is not None:
            ax.axhline(target, color="grey", linestyle=":", linewidth=1.0, label="target %.2f" % target)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0.0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a plot of failed runs has no curves to name
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
