"""The report's first table: the project's performance targets, each against what this run measured.

The targets: the Beam job at least 0.8 of a bare Pillow loop per core; the
trainer's input pipeline with full augmentation at least 1,200 images/s per core
and 0.8 of decode-only; the Keras step at least 1.3x PyTorch's and 80% of the
float32 GEMM ceiling; `python -m trainer.task` at least 0.9 of the bare model step.
"""
from benchmarks import training_step


def _verdict(value, target):
    return "met" if value >= target else "**missed**"


def target_rows(results):
    """One row per target that this run measured: (target, measured, verdict)."""
    rows = []
    pre = results.get("preprocessing")
    if pre and "ratio_per_core" in pre:
        mode = pre.get(pre.get("job_mode")) or {}
        steady = mode.get("steady_ratio_per_core", pre.get("steady_ratio_per_core"))
        measured = "%.2f" % pre["ratio_per_core"]
        if steady is not None:
            measured += " (%.2f without the job's start-up)" % steady
        if pre.get("job_mode"):
            measured += ", job mode %s" % pre["job_mode"]
        rows.append(["Beam job >= 0.8 of the bare Pillow loop, per core", measured, _verdict(pre["ratio_per_core"], 0.8)])
    inp = results.get("input")
    if inp and "train_over_decode_only" in inp:
        per_core = inp["train"]["images_per_s_per_core"]["median"]
        rows.append(["input, full augmentation >= 1,200 images/s per core", "%.0f" % per_core, _verdict(per_core, 1200)])
        ratio = inp["train_over_decode_only"]
        measured = "%.2f" % ratio
        if "train_host_over_decode_only" in inp:
            # The trainer's pipeline leaves the fused flip/scale/noise/mean pass to the
            # train step on the accelerator; say what it gives with that pass on the host.
            measured += (" (the trainer's host pipeline; %.2f with the fused pixel pass in tf.data too, "
                         "--augment_on_host)" % inp["train_host_over_decode_only"])  # fmt: skip
        rows.append(["input, full augmentation >= 0.8 of decode-only", measured, _verdict(ratio, 0.8)])
    train = results.get("train")
    if train:
        keras_run, torch_run, best = train["keras"], train["torch"], training_step.ceiling(train)
        gflop = train["flops"]["estimate"] / 1e9
        for batch in train["settings"]["batch_sizes"]:
            k = keras_run.get("batches", {}).get(str(batch))
            t = torch_run.get("batches", {}).get(str(batch))
            if k and t:
                ratio = k["median"] / t["median"]
                rows.append(["Keras step >= 1.3x PyTorch, batch %d" % batch, "%.2fx" % ratio, _verdict(ratio, 1.3)])
            elif k:
                rows.append(["Keras step >= 1.3x PyTorch, batch %d" % batch, torch_run.get("unavailable") or
                             "PyTorch run failed", "not measured"])  # fmt: skip
            if k and best:
                share = k["median"] * gflop / best[0]["median"]
                measured = "%.0f%%" % (100 * share)
                convs = training_step.conv_summary(train, batch)
                if convs:
                    measured += " (its convolutions, each op timed by itself: %.0f%%)" % (100 * convs["share_of_ceiling"])
                rows.append(["Keras step >= 80%% of the float32 GEMM ceiling, batch %d" % batch, measured,
                             _verdict(share, 0.8)])  # fmt: skip
    e2e = results.get("end_to_end")
    if e2e:
        for run in e2e["runs"]:
            name = "trainer.task >= 0.9 of the bare step, %s" % run["strategy"]
            if "error" in run:
                rows.append([name, "run failed", "not measured"])
            else:
                ratio = run["trainer"]["median"] / run["bare"]["median"]
                rows.append([name, "%.2f" % ratio, _verdict(ratio, 0.9)])
    return rows
