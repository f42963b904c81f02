"""Helpers shared by the test packages; no test module imports another test module.

- `tests.helpers.trainer_data`: tiny TFRecord data sets written with the project's own
  record writer, and the subprocess runs of `python -m trainer.task`.
- `tests.helpers.image_folders`: image collections in the layouts the Beam job reads.
"""
