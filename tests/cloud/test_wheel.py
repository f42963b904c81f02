"""The package as the container and Dataflow workers get it: a wheel in a clean venv.

Builds the wheel from a copy of the packaged sources (so the repository is not
touched), installs it into a fresh virtual environment with only its declared
dependencies (pip's cache keeps this to a couple of minutes), and runs the entry
points from a directory outside the repository, so the installed copy is imported.
This is the slowest test of the suite by design (about 2-3 minutes).
"""
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from tests.helpers.cloud_jobs import REPO, no_credentials_env, setup_packages


def _clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _install_and_run(clean, wheel, env, tmp_path):
    """Installs `wheel` into a new venv at `clean` and checks the installed entry points."""
    venv.EnvBuilder(with_pip=True, clear=True).create(clean)
    python = str(clean / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run([python, "-m", "pip", "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr

    away = tmp_path / "elsewhere"  # not the repository: imports must come from the venv
    away.mkdir()
    where = subprocess.run(
        [python, "-c", "import json, cli, cloud, model, preprocessing, trainer; "
                 "print(json.dumps([m.__file__ for m in (cli, cloud, model, preprocessing, trainer)]))"],
        env=env, cwd=away, capture_output=True, text=True, timeout=300,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    site = str(clean)
    assert all(f.startswith(site) for f in json.loads(where.stdout)), where.stdout

    # The three entry points' --help, started together (each imports TensorFlow or the SDK-free submitter).
    commands = {
        "trainer.task": "--data_dir",
        "preprocessing.build_tfrecords": "--output_dir",
        "cloud.vertex": "--dry_run",
    }
    procs = {m: subprocess.Popen([python, "-m", m, "--help"], env=env, cwd=away,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in commands}
    for module, flag in commands.items():
        out, err = procs[module].communicate(timeout=300)
        assert procs[module].returncode == 0, (module, err[-2000:])
        assert out.startswith("usage: ") and flag in out, (module, out[:500])

    # The installed submitter: a dry run prints the job; a real submission without
    # credentials is one line and exit 2. (The Vertex AI SDK is there without the
    # `cloud` extra: apache-beam[gcp] depends on google-cloud-aiplatform.)
    dry = subprocess.run(
        [python, "-m", "cloud.vertex", "--image_uri", "img:1", "--base_output_dir", "gs://b/r", "--dry_run"],
        env=env, cwd=away, capture_output=True, text=True, timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] == "img:1"
    no_credentials = no_credentials_env(away, base_env=env)
    submit = subprocess.run(
        [python, "-m", "cloud.vertex", "--image_uri", "img:1", "--base_output_dir", "gs://b/r", "--project", "p"],
        env=no_credentials, cwd=away, capture_output=True, text=True, timeout=120,
    )
    assert submit.returncode == 2, submit.stderr
    lines = submit.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cloud.vertex: error: no Google Cloud credentials"), submit.stderr


def test_wheel_installs_in_a_clean_venv_and_entry_points_run(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(REPO / "setup.py", src / "setup.py")
    for package in setup_packages():
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = _clean_env(tmp_path)

    dist = tmp_path / "dist"
    # --no-build-isolation: build with the setuptools already installed instead of fetching one.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(dist), str(src)],
        check=True, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    wheels = sorted(dist.glob("*.whl"))
    assert [w.name for w in wheels] == ["alexnet_pipeline-0.1.0-py3-none-any.whl"]

    clean = tmp_path / "venv"
    try:
        _install_and_run(clean, wheels[0], env, tmp_path)
    finally:
        shutil.rmtree(clean, ignore_errors=True)  # about 3 GB; pytest would keep it with the last runs' tmp dirs


def test_setup_file_builds_the_package_dataflow_workers_install(tmp_path):
    """`--setup_file ./setup.py`: Beam's stager builds an sdist of the package for the workers."""
    import tarfile

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(REPO / "setup.py", src / "setup.py")
    for package in setup_packages():
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "staged"
    out.mkdir()
    # The exact call Beam makes when a pipeline is submitted with --setup_file (in a
    # subprocess, because it changes the working directory).
    script = ("import sys; from apache_beam.runners.portability.stager import Stager; "
              "print(Stager._build_setup_package(sys.argv[1], sys.argv[2]))")
    proc = subprocess.run([sys.executable, "-c", script, str(src / "setup.py"), str(out)], env=_clean_env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tarball = Path(proc.stdout.strip().splitlines()[-1])
    # setuptools < 69 keeps the dash of the project name; newer ones normalise it.
    assert tarball.name in {"alexnet-pipeline-0.1.0.tar.gz", "alexnet_pipeline-0.1.0.tar.gz"}
    with tarfile.open(tarball) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert "setup.py" in names
    for package in setup_packages():
        assert "%s/__init__.py" % package in names, (package, sorted(names)[:20])
    assert not any(n.startswith("tests/") for n in names)
