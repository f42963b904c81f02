"""The Beam graph of the preprocessing job (flags live in build_tfrecords).

    List (folders, tars, inner class tars in parallel)
      -> Label (class folder / inner tar name, or the label file for flat val)
      -> key by (split, shard)  [only small references are shuffled, never pixels]
      -> WriteShard (read, decode, repair, resize, encode, write one shard file)
      -> RGB moments -> CombineGlobally(RgbMomentsCombineFn)
      -> Finalize (rejects.tsv, the guard, metadata.json written last)

Every input ends either in a shard or in the rejects list, and Finalize checks
that the counts reconcile.
"""
import dataclasses
import json
import logging
import threading
import time
import typing
from typing import Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from preprocessing import fields, images, records, shards, sources, stats

_LOG = logging.getLogger(__name__)
_NAMESPACE = "preprocessing"


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """What the job does; built from flags by build_tfrecords.

    train / val: (path, layout) with layout "tar", "classes" or "flat"; None
    to skip the split. val_labels: {image stem: synset} for flat validation
    inputs. synsets: the fixed class list, or None to use the sorted class
    folders (or inner class tars) of the training input.
    """

    output_dir: str
    train: Optional[tuple] = None
    val: Optional[tuple] = None
    val_labels: Optional[dict] = None
    synsets: Optional[tuple] = None
    names: dict = dataclasses.field(default_factory=dict)
    train_shards: int = 1024
    val_shards: int = 128
    image_size: Optional[int] = 256
    jpeg_quality: int = images.DEFAULT_JPEG_QUALITY
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    max_reject_fraction: float = 0.1
    stats_stride: int = stats.DEFAULT_STRIDE
    options: dict = dataclasses.field(default_factory=dict)

    def num_shards(self, split):
        return self.train_shards if split == fields.TRAIN else self.val_shards


class ListSource(beam.DoFn):
    """Lists one folder or tar; inner class tars go out for parallel listing."""

    def __init__(self, split):
        self._split = split

    def process(self, source):
        path, layout = source
        found = sources.list_tar(path, self._split) if layout == "tar" else sources.list_folder(path, self._split, layout)
        for item in found:
            if isinstance(item, sources.Reject):
                yield beam.pvalue.TaggedOutput("reject", item)
            elif isinstance(item, sources.Ref):
                yield item
            else:
                yield beam.pvalue.TaggedOutput("nested", item)


class ListInnerTar(beam.DoFn):
    def __init__(self, split):
        self._split = split

    def process(self, nested):
        for item in sources.list_inner_tar(nested, self._split):
            if isinstance(item, sources.Reject):
                yield beam.pvalue.TaggedOutput("reject", item)
            else:
                yield item


@beam.typehints.with_output_types(typing.Tuple[typing.Tuple[str, int], typing.Any])
class AssignShard(beam.DoFn):
    """Ref with a class -> ((split, shard), (sort key, ref, label)), or a Reject."""

    def __init__(self, num_shards):
        self._num_shards = num_shards

    def setup(self):
        self._index = None

    def process(self, ref, classes):
        if self._index is None or len(self._index) != len(classes):
            self._index = {synset: i for i, synset in enumerate(classes)}
        if ref.klass is None:
            yield beam.pvalue.TaggedOutput("reject", sources.Reject(sources.display_path(ref), ref.split, sources.NOT_IN_CLASS))
            return
        label = self._index.get(ref.klass)
        if label is None:
            reason = "class %s is not in the class list" % ref.klass
            yield beam.pvalue.TaggedOutput("reject", sources.Reject(sources.display_path(ref), ref.split, reason))
            return
        shard, sort_key = shards.shard_key(ref.split, ref.klass, ref.name, self._num_shards[ref.split])
        yield (ref.split, shard), (sort_key, ref, label)


def _join_val_labels(element):
    """CoGroupByKey result of one image stem -> labelled refs, rejects, or an
    unmatched label (a label whose image is not among the inputs)."""
    key, grouped = element
    refs, synsets = list(grouped["refs"]), list(grouped["labels"])
    if refs and synsets:
        for ref in refs:
            yield ref._replace(klass=synsets[0])
    elif refs:
        for ref in refs:
            yield beam.pvalue.TaggedOutput(
                "reject", sources.Reject(sources.display_path(ref), ref.split, "no label in --val_labels")
            )
    else:
        yield beam.pvalue.TaggedOutput("unmatched", key)


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
    """Reads, converts and writes every example of one shard, in hash order.

    Emits a summary (split, shard, written) and, tagged, the summed RGB moments
    of the shard's training images (one element per shard, not per image: the
    per-image sums are exact integers, so where they are added up does not
    change the result) and a Reject for each input that cannot become an example.
    """

    def __init__(self, config):
        self._config = config

    def setup(self):
        self._written = {s: Metrics.counter(_NAMESPACE, "%s_written" % s) for s in fields.SPLITS}
        self._rejected = {s: Metrics.counter(_NAMESPACE, "%s_rejected" % s) for s in fields.SPLITS}

    def process(self, element, classes):
        (split, shard), items = element
        cfg = self._config
        items = sorted((item for item in items if item is not None), key=lambda item: (item[0], item[1].name))
        path = shards.join(cfg.output_dir, fields.shard_name(split, shard, cfg.num_shards(split)))
        reader = sources.RefReader()
        written = 0
        rejected = []
        moments = stats.RgbMomentsCombineFn().create_accumulator() if split == fields.TRAIN else None
        try:
            with shards.create(path) as out:
                for _, ref, label in items:
                    try:
                        data = reader.read(ref)
                        # pixels: only the grid the RGB statistics use (none for validation).
                        encoded, height, width, pixels = images.process_image(
                            data, cfg.image_size, cfg.jpeg_quality, cfg.max_pixels,
                            sample_stride=cfg.stats_stride if moments is not None else 0,
                        )
                    except images.ImageRejected as err:
                        rejected.append(sources.Reject(sources.display_path(ref), split, err.reason))
                        _Progress.tick(True)
                        continue
                    except OSError as err:
                        reason = "unreadable (%s: %s)" % (type(err).__name__, err)
                        rejected.append(sources.Reject(sources.display_path(ref), split, reason))
                        _Progress.tick(True)
                        continue
                    synset = classes[label]
                    example = records.example_bytes(
                        encoded, label, height, width, synset=synset,
                        text=cfg.names.get(synset, synset), filename=ref.name,
                    )
                    out.write(shards.frame_record(example))
                    written += 1
                    _Progress.tick(False)
                    if moments is not None:
                        moments = stats.add_moments(moments, stats.pixel_moments(pixels))
        finally:
            reader.close()
        if moments is not None and moments[0]:
            yield beam.pvalue.TaggedOutput("moments", moments)
        self._written[split].inc(written)
        self._rejected[split].inc(len(rejected))
        for reject in rejected:
            yield beam.pvalue.TaggedOutput("reject", reject)
        yield split, shard, written


class ClassListCombineFn(beam.CombineFn):
    """Refs -> the sorted tuple of their distinct classes (None = flat, skipped)."""

    def create_accumulator(self):
        return set()

    def add_input(self, accumulator, ref):
        if ref.klass is not None:
            accumulator.add(ref.klass)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = set()
        for accumulator in accumulators:
            merged |= accumulator
        return merged

    def extract_output(self, accumulator):
        return tuple(sorted(accumulator))


class Finalize(beam.DoFn):
    """Writes rejects.tsv, applies --max_reject_fraction, then metadata.json.

    metadata.json is the job's last write, so a directory that has it is
    complete; when the guard trips, job_failed.txt says why instead.
    """

    def __init__(self, config):
        self._config = config

    def process(self, _, summaries, rejects, moments, classes, inputs, unmatched):
        cfg = self._config
        splits = [s for s, src in ((fields.TRAIN, cfg.train), (fields.VALIDATION, cfg.val)) if src]
        written = {s: 0 for s in fields.SPLITS}
        for split, _, count in summaries:
            written[split] += count
        rejected = {s: 0 for s in fields.SPLITS}
        for reject in rejects:
            rejected[reject.split] += 1
        found = {s: 0 for s in fields.SPLITS}
        for split, count in inputs:
            found[split] += count
        for split in fields.SPLITS:
            if found[split] != written[split] + rejected[split]:
                raise RuntimeError(
                    "counts do not reconcile for %s: %d inputs != %d written + %d rejected"
                    % (split, found[split], written[split], rejected[split])
                )
        lines = ["path\tsplit\treason"] + ["%s\t%s\t%s" % r for r in sorted(tuple(r) for r in rejects)]
        shards.write_bytes(shards.join(cfg.output_dir, shards.REJECTS_FILE), ("\n".join(lines) + "\n").encode("utf-8"))
        shards.write_bytes(
            shards.join(cfg.output_dir, shards.UNMATCHED_LABELS_FILE),
            "".join("%s\n" % key for key in sorted(unmatched)).encode("utf-8"),
        )
        problems = []
        for split in splits:
            if not found[split]:
                problems.append("%s: found no images" % split)
            elif rejected[split] > cfg.max_reject_fraction * found[split]:
                problems.append(
                    "%s: rejected %d of %d inputs (%.1f%%), more than --max_reject_fraction %g"
                    % (split, rejected[split], found[split], 100.0 * rejected[split] / found[split], cfg.max_reject_fraction)
                )
        if problems:
            message = "; ".join(problems) + "; see %s for the reasons (wrong folder or label file?)" % shards.join(
                cfg.output_dir, shards.REJECTS_FILE
            )
            shards.write_bytes(shards.join(cfg.output_dir, shards.FAILED_FILE), (message + "\n").encode("utf-8"))
            yield message
            return
        metadata = {
            "format_version": fields.METADATA_FORMAT_VERSION,
            "num_classes": len(classes),
            "label_offset": 0,
            "synsets": list(classes),
            "class_names": [cfg.names.get(s, s) for s in classes],
            "image_size": cfg.image_size or None,
            "counts": {s: written[s] for s in fields.SPLITS},
            "rejected": {s: rejected[s] for s in fields.SPLITS},
            "shards": {s: (cfg.num_shards(s) if s in splits else 0) for s in fields.SPLITS},
            "inputs": {s: found[s] for s in fields.SPLITS},
            "labels_without_images": {fields.VALIDATION: len(unmatched)},
            "rejects_file": shards.REJECTS_FILE,
            "rgb": stats.rgb_statistics(moments, cfg.stats_stride) if moments is not None else None,
            "options": cfg.options,
        }
        data = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
        shards.write_bytes(shards.join(cfg.output_dir, fields.METADATA_FILE), data.encode("utf-8"))
        yield None


def build(p, cfg):
    """Adds the whole job to pipeline `p`.

    Args:
      p: a beam.Pipeline.
      cfg: a JobConfig.

    Returns:
      The PCollection of Finalize's single result: None on success, else the
      guard's message.
    """
    listed_refs, rejects, input_counts, flat_refs = [], [], [], []
    for split, source in ((fields.TRAIN, cfg.train), (fields.VALIDATION, cfg.val)):
        if source is None:
            continue
        tag = "[%s]" % split
        listed = (
            p
            | "Source" + tag >> beam.Create([source])
            | "List" + tag >> beam.ParDo(ListSource(split)).with_outputs("nested", "reject", main="ref")
        )
        if source[1] == "tar":
            inner = (
                listed.nested
                # One inner class tar per worker task instead of all on the lister.
                | "SpreadInnerTars" + tag >> beam.Reshuffle()
                | "ListInnerTars" + tag >> beam.ParDo(ListInnerTar(split)).with_outputs("reject", main="ref")
            )
            refs = (listed.ref, inner.ref) | "AllRefs" + tag >> beam.Flatten()
            rejects += [listed.reject, inner.reject]
            input_counts += [refs, listed.reject, inner.reject]
        else:
            # Folders hold no inner tars: no shuffle stage for them (each stage
            # is start-up time the job pays even on a few images).
            refs = listed.ref
            rejects.append(listed.reject)
            input_counts += [refs, listed.reject]
        if split == fields.VALIDATION and cfg.val_labels is not None:
            by_class = refs | "Layout" + tag >> beam.Partition(lambda ref, _: 0 if ref.klass is None else 1, 2)
            flat_refs.append(by_class[0])
            listed_refs.append(by_class[1])
        else:
            listed_refs.append(refs)

    unmatched = []  # at most one PCollection: flat validation labels without an image
    if flat_refs:
        labels = p | "ValLabels" >> beam.Create(sorted(cfg.val_labels.items()))
        joined = (
            {
                "refs": flat_refs[0] | "KeyByStem" >> beam.Map(lambda ref: (sources.stem(ref.name), ref)),
                "labels": labels,
            }
            | "JoinValLabels" >> beam.CoGroupByKey()
            | "ApplyValLabels" >> beam.FlatMap(_join_val_labels).with_outputs("reject", "unmatched", main="ref")
        )
        listed_refs.append(joined.ref)
        rejects.append(joined.reject)
        unmatched.append(joined.unmatched)

    all_refs = listed_refs | "Refs" >> beam.Flatten()
    # The DoFns below do not need the labels (50,000 entries for ImageNet):
    # leave them out of what gets pickled into the job graph.
    lean = dataclasses.replace(cfg, val_labels=None)
    if cfg.synsets is not None:
        classes = p | "ClassList" >> beam.Create([tuple(cfg.synsets)])
    else:
        # Without --synsets the classes are the training input's class folders
        # (or inner class tars), sorted: the standard ImageNet label order.
        classes = listed_refs[0] | "ClassList" >> beam.CombineGlobally(ClassListCombineFn()).without_defaults()
    # without_defaults + a default here: Beam's own default for an empty input
    # costs two extra stages (start-up time on every run).
    class_list = beam.pvalue.AsSingleton(classes, default_value=())

    num_shards = {s: cfg.num_shards(s) for s in fields.SPLITS}
    keyed = all_refs | "AssignShard" >> beam.ParDo(AssignShard(num_shards), class_list).with_outputs("reject", main="ref")
    rejects.append(keyed.reject)
    # One placeholder per shard so that shards left empty are still written:
    # readers glob `train-*-of-N` and expect N files.
    # (No reshuffle after Create: the GroupByKey right after spreads them anyway.)
    placeholders = p | "EveryShard" >> beam.Create(
        [((split, i), None) for split, src in ((fields.TRAIN, cfg.train), (fields.VALIDATION, cfg.val)) if src
         for i in range(num_shards[split])],
        reshuffle=False,
    )
    written = (
        (keyed.ref, placeholders)
        | "WithPlaceholders" >> beam.Flatten()
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShard" >> beam.ParDo(WriteShard(lean), class_list).with_outputs("moments", "reject", main="summary")
    )
    rejects.append(written.reject)
    moments = written.moments | "RgbMoments" >> beam.CombineGlobally(stats.RgbMomentsCombineFn()).without_defaults()

    all_rejects = rejects | "Rejects" >> beam.Flatten()
    # One count per split of every input (refs and rejects both carry .split):
    # a per-key count needs no default-value stage, unlike Count.Globally.
    counts = (
        input_counts
        | "Inputs" >> beam.Flatten()
        | "InputSplit" >> beam.Map(lambda item: item.split)
        | "CountInputs" >> beam.combiners.Count.PerElement()
    )
    return (
        p
        | "Finish" >> beam.Create([None])
        | "Finalize" >> beam.ParDo(
            Finalize(lean),
            summaries=beam.pvalue.AsList(written.summary),
            rejects=beam.pvalue.AsList(all_rejects),
            moments=beam.pvalue.AsSingleton(moments, default_value=None),  # None: no training image
            classes=class_list,
            inputs=beam.pvalue.AsList(counts),
            unmatched=beam.pvalue.AsList(unmatched[0]) if unmatched else (),
        )
    )
