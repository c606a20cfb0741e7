"""The files passed between stages, each defined once, below the stages that write and read them.

- ``audio_list``: ``audio<TAB>transcript`` lists (written by preparation and the web UI, read by
  extraction);
- ``speaker_info``: ``speaker_info.json`` (written by extraction, read by training and evaluation);
- ``manifests``: the per-speaker ``metadata*.jsonl`` (written by extraction, read by training,
  evaluation and the report).

One path rule for all three (``paths``): a relative path in a file is relative to that file's
folder; an absolute one is kept as it is. Writers store paths relative to the file's folder.
"""
