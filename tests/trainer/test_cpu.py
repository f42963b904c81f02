"""trainer.cpu: the CPU's flags from /proc/cpuinfo and the bfloat16 warning."""
import pytest

from trainer import cpu as cpu_lib

X86 = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse avx2 fma avx512f avx512_bf16\n\n"
    "processor\t: 1\nflags\t\t: fpu\n"
)
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_flags_of_the_first_cpu_on_x86_and_arm(tmp_path):
    (tmp_path / "x86").write_text(X86)
    (tmp_path / "arm").write_text(ARM)
    assert cpu_lib.cpu_flags(str(tmp_path / "x86")) == {"fpu", "sse", "avx2", "fma", "avx512f", "avx512_bf16"}
    assert cpu_lib.cpu_flags(str(tmp_path / "arm")) == {"fp", "asimd", "sve", "bf16", "i8mm"}
    assert cpu_lib.cpu_flags(str(tmp_path / "missing")) is None


@pytest.mark.parametrize(
    "precision,xla,accelerators,flags,warned",
    [
        ("bfloat16", False, 0, {"avx2", "fma"}, True),
        ("bfloat16", False, 0, {"avx2", "avx512_bf16"}, False),
        ("bfloat16", False, 0, {"amx_bf16"}, False),
        ("bfloat16", False, 0, {"asimd", "bf16"}, False),
        ("bfloat16", True, 0, {"avx2"}, False),  # XLA runs it well
        ("bfloat16", False, 1, {"avx2"}, False),  # the step runs on the GPU or TPU
        ("bfloat16", False, 0, None, False),  # flags unknown: no guess
        ("float16", False, 0, {"avx2"}, False),
        ("none", False, 0, {"avx2"}, False),
    ],
)
def test_bfloat16_warning_only_where_the_cpu_emulates_it(precision, xla, accelerators, flags, warned):
    warning = cpu_lib.bfloat16_warning(precision, xla, accelerators, flags)
    assert (warning is not None) == warned
    if warned:
        assert warning.startswith("warning: --mixed_precision bfloat16") and "--xla" in warning and "\n" not in warning
