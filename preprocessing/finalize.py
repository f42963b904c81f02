"""The job's last step: the input accounting, the guard, and what it leaves behind.

Every input ends in a shard, in the rejects list or in the skipped list, and
Finalize checks that the counts reconcile. On success it moves the shards into
place and writes metadata.json last, so a directory that has it is complete;
on failure it removes the shards and job_failed.txt says why.
"""
import json

import apache_beam as beam

from preprocessing import fields, shards, stats


def _tally(items):
    counts = {s: 0 for s in fields.SPLITS}
    for item in items:
        counts[item.split] += 1
    return counts


def _listing(rows):
    lines = ["path\tsplit\treason"] + ["%s\t%s\t%s" % row for row in sorted(tuple(row) for row in rows)]
    return ("\n".join(lines) + "\n").encode("utf-8")


class Finalize(beam.DoFn):
    """Writes rejects.tsv and skipped.tsv, applies --max_reject_fraction, then
    moves the shards into place and writes metadata.json.

    Yields None on success, else the one-line reason the job failed.
    """

    def __init__(self, config):
        self._config = config

    def _problems(self, found, written, rejected, skipped, classes):
        cfg = self._config
        problems = []
        for split in fields.SPLITS:
            if found[split] != written[split] + rejected[split] + skipped[split]:
                problems.append(
                    "counts do not reconcile for %s: %d inputs != %d written + %d rejected + %d skipped"
                    % (split, found[split], written[split], rejected[split], skipped[split])
                )
        missing = [synset for synset in classes if cfg.names_required and synset not in cfg.names]
        if missing:
            problems.append("class %s is not in --class_names (%d of %d classes have no name there)"
                            % (missing[0], len(missing), len(classes)))
        for split in cfg.splits():
            images = found[split] - skipped[split]  # skipped files are no images: outside the guard
            if not images:
                problems.append("%s: found no images" % split)
            elif rejected[split] > cfg.max_reject_fraction * images:
                problems.append(
                    "%s: rejected %d of %d inputs (%.1f%%), more than --max_reject_fraction %g%s"
                    % (split, rejected[split], images, 100.0 * rejected[split] / images, cfg.max_reject_fraction,
                       " (%d skipped files not counted)" % skipped[split] if skipped[split] else "")
                )
        return problems

    def _fail(self, problems, unmatched):
        cfg = self._config
        shards.remove_in_progress(cfg.output_dir)
        if unmatched:  # labels without images explain "no label" rejects
            self._write_unmatched(unmatched)
        message = "; ".join(problems) + "; see %s and %s for the reasons (wrong folder or label file?)" % (
            shards.join(cfg.output_dir, shards.REJECTS_FILE), shards.SKIPPED_FILE)
        shards.write_bytes(shards.join(cfg.output_dir, shards.FAILED_FILE), (message + "\n").encode("utf-8"))
        return message

    def _write_unmatched(self, unmatched):
        shards.write_bytes(
            shards.join(self._config.output_dir, shards.UNMATCHED_LABELS_FILE),
            "".join("%s\n" % key for key in sorted(unmatched)).encode("utf-8"),
        )

    def process(self, _, summaries, rejects, skips, moments, classes, inputs, unmatched):
        cfg = self._config
        written, small = {s: 0 for s in fields.SPLITS}, {s: 0 for s in fields.SPLITS}
        for split, _, count, kept_small in summaries:
            written[split] += count
            small[split] += kept_small
        rejected, skipped = _tally(rejects), _tally(skips)
        found = {s: 0 for s in fields.SPLITS}
        for split, count in inputs:
            found[split] += count
        shards.write_bytes(shards.join(cfg.output_dir, shards.REJECTS_FILE), _listing(rejects))
        shards.write_bytes(shards.join(cfg.output_dir, shards.SKIPPED_FILE), _listing(skips))
        problems = self._problems(found, written, rejected, skipped, classes)
        if problems:
            yield self._fail(problems, unmatched)
            return
        self._write_unmatched(unmatched)
        shards.move_into_place(
            cfg.output_dir, [fields.shard_name(split, shard, cfg.num_shards(split)) for split, shard, _, _ in summaries]
        )
        metadata = {
            "format_version": fields.METADATA_FORMAT_VERSION,
            "num_classes": len(classes),
            "label_offset": 0,
            "synsets": list(classes),
            "class_names": [cfg.names.get(s, s) for s in classes],
            # A promise that every stored image is at least this side: none with images kept small.
            "image_size": (cfg.image_size or None) if not any(small.values()) else None,
            "kept_small": small,
            "counts": written,
            "rejected": rejected,
            "skipped": skipped,
            "shards": {s: (cfg.num_shards(s) if s in cfg.splits() else 0) for s in fields.SPLITS},
            "inputs": found,
            "labels_without_images": {fields.VALIDATION: len(unmatched)},
            "rejects_file": shards.REJECTS_FILE,
            "skipped_file": shards.SKIPPED_FILE,
            "rgb": stats.rgb_statistics(moments, cfg.stats_stride) if moments is not None else None,
            "options": cfg.options,
        }
        data = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
        shards.write_bytes(shards.join(cfg.output_dir, fields.METADATA_FILE), data.encode("utf-8"))
        yield None
