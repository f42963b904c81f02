"""Installable package for the AlexNet pipeline.

The same file serves three users: `pip install -e .[dev]` on a workstation, the
trainer container (Dockerfile), and Dataflow workers (`--setup_file ./setup.py`),
so the runtime dependencies below are what every one of them needs.
"""
import setuptools

REQUIRED = [
    # TF and Keras move together; 2.21 is the release this project is measured on.
    "tensorflow>=2.21,<2.22",
    "keras>=3.15,<4",
    "tensorboard>=2.21,<2.22",
    # [gcp] brings WriteToTFRecord's crc32c and the gs:// filesystem.
    "apache-beam[gcp]>=2.77,<2.78",
    "pillow>=10.4,<14",
    # TFRecord framing in preprocessing/shards.py (also arrives with apache-beam[gcp]).
    "google-crc32c>=1.5,<2",
    "numpy>=1.26,<3",
    # Plots for the paper-claim experiments (PNG, Agg backend, no display needed).
    "matplotlib>=3.8,<4",
]

EXTRAS = {
    # python -m benchmarks: the same network in plain PyTorch, side by side (CPU build).
    "bench": ["torch>=2.9,<2.15"],
    # cloud.vertex: the Vertex AI SDK, and YAML job files.
    "cloud": ["google-cloud-aiplatform>=1.70,<3", "pyyaml>=6,<7"],
    "dev": [
        "pytest>=8,<10",
        "ruff>=0.17,<0.18",
        "pytest-timeout>=2.3,<3",
        "pyyaml>=6,<7",
        "build>=1.2,<2",
        "google-cloud-aiplatform>=1.70,<3",
    ],
}

setuptools.setup(
    name="alexnet-pipeline",
    version="0.1.0",
    description="AlexNet (Krizhevsky, Sutskever, Hinton 2012) reproduced on TensorFlow 2 / Keras 3: "
    "Beam preprocessing, tf.data augmentation, distributed training, Vertex AI.",
    python_requires=">=3.10,<3.14",
    packages=setuptools.find_packages(
        include=["cli*", "preprocessing*", "model*", "trainer*", "experiments*", "benchmarks*", "cloud*"]
    ),
    install_requires=REQUIRED,
    extras_require=EXTRAS,
)
