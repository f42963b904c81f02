"""The step that reads, converts and writes one shard (the job's pixel work)."""
import logging
import threading
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from preprocessing import fields, images, listing, reader, records, shards, stats

_LOG = logging.getLogger(__name__)
_NAMESPACE = "preprocessing"


class _Progress:
    """Per-process progress line every 10 s: images done, rejected, images/s."""

    _lock = threading.Lock()
    _start = None
    _last = 0.0
    done = 0
    rejected = 0

    @classmethod
    def tick(cls, rejected):
        with cls._lock:
            now = time.time()
            if cls._start is None:
                cls._start = cls._last = now
            cls.done += 1
            cls.rejected += int(rejected)
            if now - cls._last >= 10.0:
                cls._last = now
                _LOG.warning(
                    "progress: %d images done in this worker, %d rejected, %.1f images/s",
                    cls.done, cls.rejected, cls.done / max(now - cls._start, 1e-9),
                )


class WriteShard(beam.DoFn):
    """Reads, converts and writes every example of one shard, in hash order,
    into the output's in-progress folder (Finalize moves it into place).

    Emits a summary (split, shard, written, kept small) and, tagged, the summed
    RGB moments of the shard's training images (one element per shard, not per
    image: the per-image sums are exact integers, so where they are added up
    does not change the result) and a Reject for each input that cannot become
    an example.
    """

    def __init__(self, config):
        self._config = config

    def setup(self):
        self._written = {s: Metrics.counter(_NAMESPACE, "%s_written" % s) for s in fields.SPLITS}
        self._rejected = {s: Metrics.counter(_NAMESPACE, "%s_rejected" % s) for s in fields.SPLITS}

    def _convert(self, data, with_pixels):
        cfg = self._config
        # pixels: only the grid the RGB statistics use (none for validation).
        return images.process_image(
            data, cfg.image_size, cfg.jpeg_quality, cfg.max_pixels,
            sample_stride=cfg.stats_stride if with_pixels else 0, upscale=not cfg.keep_small,
        )

    def process(self, element, classes):
        (split, shard), items = element
        cfg = self._config
        # The path breaks ties between equal base names in different sub-folders of a class.
        items = sorted((i for i in items if i is not None), key=lambda i: (i[0], i[1].name, i[1].path, i[1].offset or 0))
        path = shards.in_progress_path(cfg.output_dir, fields.shard_name(split, shard, cfg.num_shards(split)))
        refs = reader.RefReader()
        written = small = 0
        rejected = []
        moments = stats.RgbMomentsCombineFn().create_accumulator() if split == fields.TRAIN else None
        try:
            with shards.create(path) as out:
                for _, ref, label in items:
                    try:
                        encoded, height, width, pixels = self._convert(refs.read(ref), moments is not None)
                    except (images.ImageRejected, OSError) as err:
                        reason = err.reason if isinstance(err, images.ImageRejected) else "unreadable (%s: %s)" % (
                            type(err).__name__, err)
                        rejected.append(listing.Reject(listing.display_path(ref), split, reason))
                        _Progress.tick(True)
                        continue
                    synset = classes[label]
                    example = records.example_bytes(
                        encoded, label, height, width, synset=synset,
                        text=cfg.names.get(synset, synset), filename=ref.name,
                    )
                    out.write(shards.frame_record(example))
                    written += 1
                    small += int(bool(cfg.image_size) and min(height, width) < cfg.image_size)
                    _Progress.tick(False)
                    if moments is not None:
                        moments = stats.add_moments(moments, stats.pixel_moments(pixels))
        finally:
            refs.close()
        if moments is not None and moments[0]:
            yield beam.pvalue.TaggedOutput("moments", moments)
        self._written[split].inc(written)
        self._rejected[split].inc(len(rejected))
        for reject in rejected:
            yield beam.pvalue.TaggedOutput("reject", reject)
        yield split, shard, written, small
