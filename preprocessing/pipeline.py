"""The Beam graph of the preprocessing job (flags live in build_tfrecords).

    List (folders, tars, inner class tars in parallel; sidecar files skipped)
      -> Label (class folder / inner tar name, or the label file for flat val)
      -> key by (split, shard)  [only small references are shuffled, never pixels]
      -> WriteShard (read, decode, repair, resize, encode, write one shard file)
      -> RGB moments -> CombineGlobally(RgbMomentsCombineFn)
      -> Finalize (rejects.tsv, skipped.tsv, the guard, shards moved into
         place, metadata.json written last)

Every input ends in a shard, in the rejects list or in the skipped list, and
Finalize checks that the counts reconcile.
"""
import dataclasses
import typing
from typing import Optional

import apache_beam as beam

from preprocessing import fields, finalize, images, labels, listing, shards, stats, write_shard


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """What the job does; built from flags by build_tfrecords.

    train / val: (path, layout) with layout "tar", "classes" or "flat"; None
    to skip the split. val_labels: {image stem: synset} for flat validation
    inputs. synsets: the fixed class list, or None to use the sorted class
    folders (or inner class tars) of the training input. names: synset ->
    class name; names_required: every class must have one (--class_names).
    keep_small: images under image_size are stored at their own size.
    """

    output_dir: str
    train: Optional[tuple] = None
    val: Optional[tuple] = None
    val_labels: Optional[dict] = None
    synsets: Optional[tuple] = None
    names: dict = dataclasses.field(default_factory=dict)
    names_required: bool = False
    train_shards: int = 1024
    val_shards: int = 128
    image_size: Optional[int] = 256
    keep_small: bool = False
    jpeg_quality: int = images.DEFAULT_JPEG_QUALITY
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    max_reject_fraction: float = 0.1
    stats_stride: int = stats.DEFAULT_STRIDE
    options: dict = dataclasses.field(default_factory=dict)

    def num_shards(self, split):
        return self.train_shards if split == fields.TRAIN else self.val_shards

    def sources(self):
        """[(split, (path, layout))] of the splits the job converts."""
        return [(split, src) for split, src in ((fields.TRAIN, self.train), (fields.VALIDATION, self.val)) if src]

    def splits(self):
        return [split for split, _ in self.sources()]


def _route(item):
    """A listed item -> the main output (a Ref) or its tagged output."""
    if isinstance(item, listing.Ref):
        return item
    if isinstance(item, listing.Reject):
        return beam.pvalue.TaggedOutput("reject", item)
    if isinstance(item, listing.Skip):
        return beam.pvalue.TaggedOutput("skip", item)
    return beam.pvalue.TaggedOutput("nested", item)


class ListSource(beam.DoFn):
    """Lists one folder or tar; inner class tars go out for parallel listing."""

    def __init__(self, split):
        self._split = split

    def process(self, source):
        path, layout = source
        found = listing.list_tar(path, self._split) if layout == "tar" else listing.list_folder(path, self._split, layout)
        for item in found:
            yield _route(item)


class ListInnerTar(beam.DoFn):
    def __init__(self, split):
        self._split = split

    def process(self, nested):
        for item in listing.list_inner_tar(nested, self._split):
            yield _route(item)


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
            yield beam.pvalue.TaggedOutput("reject", listing.Reject(listing.display_path(ref), ref.split, listing.NOT_IN_CLASS))
            return
        label = self._index.get(ref.klass)
        if label is None:
            reason = "class %s is not in the class list" % ref.klass
            yield beam.pvalue.TaggedOutput("reject", listing.Reject(listing.display_path(ref), ref.split, reason))
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
                "reject", listing.Reject(listing.display_path(ref), ref.split, "no label in --val_labels")
            )
    else:
        yield beam.pvalue.TaggedOutput("unmatched", key)


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


@dataclasses.dataclass
class _Listed:
    """The PCollections the listing stages produce, gathered over both splits."""

    refs: list = dataclasses.field(default_factory=list)  # labelled by the layout
    flat: list = dataclasses.field(default_factory=list)  # flat validation refs, labelled from the file
    rejects: list = dataclasses.field(default_factory=list)
    skips: list = dataclasses.field(default_factory=list)
    inputs: list = dataclasses.field(default_factory=list)  # everything listed, to count the inputs


def _list_split(p, cfg, split, source, listed):
    tag = "[%s]" % split
    out = (
        p
        | "Source" + tag >> beam.Create([source])
        | "List" + tag >> beam.ParDo(ListSource(split)).with_outputs("nested", "reject", "skip", main="ref")
    )
    refs = out.ref
    listed.rejects.append(out.reject)
    listed.skips.append(out.skip)
    listed.inputs += [out.reject, out.skip]
    if source[1] == "tar":
        inner = (
            out.nested
            # One inner class tar per worker task instead of all on the lister.
            | "SpreadInnerTars" + tag >> beam.Reshuffle()
            | "ListInnerTars" + tag >> beam.ParDo(ListInnerTar(split)).with_outputs("reject", "skip", main="ref")
        )
        refs = (out.ref, inner.ref) | "AllRefs" + tag >> beam.Flatten()
        listed.rejects.append(inner.reject)
        listed.skips.append(inner.skip)
        listed.inputs += [inner.reject, inner.skip]
    # Folders hold no inner tars: no shuffle stage for them (each stage is
    # start-up time the job pays even on a few images).
    listed.inputs.append(refs)
    if split == fields.VALIDATION and cfg.val_labels is not None:
        by_class = refs | "Layout" + tag >> beam.Partition(lambda ref, _: 0 if ref.klass is None else 1, 2)
        listed.flat.append(by_class[0])
        listed.refs.append(by_class[1])
    else:
        listed.refs.append(refs)


def _apply_val_labels(p, cfg, listed):
    """Labels the flat validation refs from the label file; returns the
    PCollection of labels without an image."""
    joined = (
        {
            "refs": listed.flat[0] | "KeyByStem" >> beam.Map(lambda ref: (labels.stem(ref.name), ref)),
            "labels": p | "ValLabels" >> beam.Create(sorted(cfg.val_labels.items())),
        }
        | "JoinValLabels" >> beam.CoGroupByKey()
        | "ApplyValLabels" >> beam.FlatMap(_join_val_labels).with_outputs("reject", "unmatched", main="ref")
    )
    listed.refs.append(joined.ref)
    listed.rejects.append(joined.reject)
    return joined.unmatched


def _class_list(p, cfg, listed):
    if cfg.synsets is not None:
        classes = p | "ClassList" >> beam.Create([tuple(cfg.synsets)])
    else:
        # Without --synsets the classes are the training input's class folders
        # (or inner class tars), sorted: the standard ImageNet label order.
        classes = listed.refs[0] | "ClassList" >> beam.CombineGlobally(ClassListCombineFn()).without_defaults()
    # without_defaults + a default here: Beam's own default for an empty input
    # costs two extra stages (start-up time on every run).
    return beam.pvalue.AsSingleton(classes, default_value=())


def _write_shards(p, lean, listed, class_list):
    """Keys every labelled ref by shard and writes the shards; returns WriteShard's outputs."""
    num_shards = {s: lean.num_shards(s) for s in fields.SPLITS}
    all_refs = listed.refs | "Refs" >> beam.Flatten()
    keyed = all_refs | "AssignShard" >> beam.ParDo(AssignShard(num_shards), class_list).with_outputs("reject", main="ref")
    listed.rejects.append(keyed.reject)
    # One placeholder per shard so that shards left empty are still written:
    # readers glob `train-*-of-N` and expect N files.
    # (No reshuffle after Create: the GroupByKey right after spreads them anyway.)
    placeholders = p | "EveryShard" >> beam.Create(
        [((split, i), None) for split in lean.splits() for i in range(num_shards[split])], reshuffle=False,
    )
    written = (
        (keyed.ref, placeholders)
        | "WithPlaceholders" >> beam.Flatten()
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShard" >> beam.ParDo(write_shard.WriteShard(lean), class_list).with_outputs(
            "moments", "reject", main="summary")
    )
    listed.rejects.append(written.reject)
    return written


def build(p, cfg):
    """Adds the whole job to pipeline `p`.

    Args:
      p: a beam.Pipeline.
      cfg: a JobConfig.

    Returns:
      The PCollection of Finalize's single result: None on success, else the
      guard's message.
    """
    listed = _Listed()
    for split, source in cfg.sources():
        _list_split(p, cfg, split, source, listed)
    unmatched = _apply_val_labels(p, cfg, listed) if listed.flat else None
    # The DoFns below do not need the labels (50,000 entries for ImageNet):
    # leave them out of what gets pickled into the job graph.
    lean = dataclasses.replace(cfg, val_labels=None)
    class_list = _class_list(p, cfg, listed)
    written = _write_shards(p, lean, listed, class_list)
    moments = written.moments | "RgbMoments" >> beam.CombineGlobally(stats.RgbMomentsCombineFn()).without_defaults()
    # One count per split of every input (refs, rejects and skips all carry
    # .split): a per-key count needs no default-value stage, unlike Count.Globally.
    counts = (
        listed.inputs
        | "Inputs" >> beam.Flatten()
        | "InputSplit" >> beam.Map(lambda item: item.split)
        | "CountInputs" >> beam.combiners.Count.PerElement()
    )
    return (
        p
        | "Finish" >> beam.Create([None])
        | "Finalize" >> beam.ParDo(
            finalize.Finalize(lean),
            summaries=beam.pvalue.AsList(written.summary),
            rejects=beam.pvalue.AsList(listed.rejects | "Rejects" >> beam.Flatten()),
            skips=beam.pvalue.AsList(listed.skips | "Skips" >> beam.Flatten()),
            moments=beam.pvalue.AsSingleton(moments, default_value=None),  # None: no training image
            classes=class_list,
            inputs=beam.pvalue.AsList(counts),
            unmatched=beam.pvalue.AsList(unmatched) if unmatched is not None else (),
        )
    )
