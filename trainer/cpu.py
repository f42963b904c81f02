"""What the host CPU offers the trainer, read without importing TensorFlow.

Used for one warning: `--mixed_precision bfloat16` on a CPU without native
bfloat16 arithmetic. TensorFlow's kernels then emulate it and the step runs
many times slower than in float32, unless it is compiled with `--xla`
(BENCHMARKS.md, "Distribution"; the measurements: docs/decisions/trainer-cpu.md).
"""

# /proc/cpuinfo names of the instructions that do bfloat16 arithmetic natively
# (x86: AVX-512 BF16 and AMX; Arm: the BF16 extension).
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags(path="/proc/cpuinfo"):
    """The first CPU's feature flags ('flags' on x86, 'Features' on Arm); None when unreadable or without such a line."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")) and ":" in line:
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def bfloat16_warning(mixed_precision, xla, accelerators, flags):
    """The warning line for bfloat16 emulated on the CPU, or None when it does not apply.

    Args:
      mixed_precision: the config's 'none', 'bfloat16' or 'float16'.
      xla: whether the step is compiled with XLA (which then runs bfloat16 well).
      accelerators: number of GPUs and TPUs the job trains on.
      flags: `cpu_flags()`; None (unknown) gives no warning.
    """
    if mixed_precision != "bfloat16" or xla or accelerators or flags is None:
        return None
    if flags & set(NATIVE_BFLOAT16_FLAGS):
        return None
    return (
        "warning: --mixed_precision bfloat16 on a CPU without native bfloat16 (no AVX-512 BF16, AMX or "
        "Arm BF16): TensorFlow emulates it, and the step runs many times slower than in float32 on such a CPU "
        "(BENCHMARKS.md, \"Distribution\"). Add --xla, which runs it about as fast as float32, or leave "
        "--mixed_precision unset."
    )
