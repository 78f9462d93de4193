"""Documents to sentences, for a transfer set of sentences (SST-2's unit) from a corpus of reviews.

spaCy's rule-based ``sentencizer`` splits each line (one document) after
its tokenizer; a sentence is written as its tokens joined by spaces, and
lower-cased with ``lower`` (SST-2's own form: ``it 's a charming film .``),
so the teacher and the n-gram features read corpus sentences as they read
the task's.  Sentences are deduplicated and those of ``exclude`` files
(the task's dev set) dropped, both by a key that ignores case and spacing
(the n-gram tokenizer's tokens); ``min_tokens`` drops fragments.

Work runs over line-aligned chunks of every input in ``workers`` processes;
each chunk's sentences go to ``OUTPUT.parts/`` (a rerun after a kill keeps
finished chunks), and the output appears atomically in input order once
all are done, with its statistics in ``OUTPUT.json``.
"""

import hashlib
import json
import logging
import os
from typing import Iterable, List, Sequence

from ..fileio import (
    atomic_output,
    check_input_file,
    check_output_path,
    prepare_work_dir,
    remove_work_dir,
)
from .ngrams import get_tokenizer
from .text_io import (
    DecodeReport,
    clean_text,
    find_offsets,
    iter_lines,
    lines_before,
    map_chunks,
    output_job,
    progress_callback,
    warn_bad_utf8,
)

logger = logging.getLogger(__name__)

_NLP = None


def _sentencizer():
    global _NLP
    if _NLP is None:
        import spacy

        _NLP = spacy.blank("en")
        _NLP.add_pipe("sentencizer")
        _NLP.max_length = 10 ** 8  # one review can be one huge line
    return _NLP


def split_text(text: str, lower: bool = True) -> List[str]:
    """The sentences of one document, each its tokens joined by single spaces."""
    return [_join(s, lower) for s in _sentencizer()(clean_text(text)).sents]


def _join(sent, lower: bool) -> str:
    out = " ".join(t.text for t in sent if not t.is_space)
    return out.lower() if lower else out


def sentence_key(sentence: str) -> bytes:
    """Identity for deduplication and exclusion: the n-gram tokenizer's tokens (case and
    spacing aside), hashed to 8 bytes so that millions of keys fit in memory."""
    words = " ".join(get_tokenizer("default")(sentence))
    return hashlib.blake2b(words.encode("utf-8"), digest_size=8).digest()


def _split_chunk(path: str, start: int, end: int, part: str, lower: bool) -> None:
    report = DecodeReport()
    progress = progress_callback()
    lines = []
    with atomic_output(part, "w", encoding="utf-8", newline="\n") as out:
        def flush():
            for doc in _sentencizer().pipe(lines, batch_size=64):
                out.writelines(s + "\n" for s in (_join(x, lower) for x in doc.sents) if s)
            progress(sum(len(x) + 1 for x in lines))
            lines.clear()

        for line in iter_lines(path, start, end, report):
            lines.append(line)
            if len(lines) >= 256:
                flush()
        flush()
    with atomic_output(part + ".json", "w") as f:
        first = lines_before(path, start)  # the file's line numbers, not the chunk's
        json.dump({"documents": report.num_lines, "bad_lines": [first + n + 1 for n in report.bad_lines]}, f)


def split_sentences(inputs: Sequence[str], output_path: str, exclude: Sequence[str] = (),
                    min_tokens: int = 3, lower: bool = True, workers: int = 1,
                    chunk_bytes: int = 8 << 20) -> dict:
    """Write the unique sentences of ``inputs`` (one document per line) to ``output_path``.

    Returns counts: documents, sentences found, kept, duplicates, excluded, too short."""
    if not inputs:
        raise ValueError("no input files")
    if min_tokens < 1:
        raise ValueError(f"--min-tokens must be at least 1, got {min_tokens}")
    for p in [*inputs, *exclude]:
        check_input_file(p)
    check_output_path(output_path)
    stats_path = output_path + ".json"
    check_output_path(stats_path)
    parts_dir = output_path + ".parts"
    with output_job([output_path, stats_path], parts_dir):
        tasks, chunks = _plan(inputs, parts_dir, lower, workers, chunk_bytes)
        map_chunks(_split_chunk, tasks, workers, sum(t[2] - t[1] for t in tasks), "splitting sentences")
        excluded_keys = {sentence_key(s) for p in exclude for s in iter_lines(p)}
        stats = {"documents": 0, "sentences": 0, "kept": 0, "duplicates": 0, "excluded": 0,
                 "too_short": 0}
        seen = set()
        bad = {}
        with atomic_output(output_path, "w", encoding="utf-8", newline="\n") as out:
            for path, part in chunks:
                with open(part + ".json") as f:
                    info = json.load(f)
                stats["documents"] += info["documents"]
                bad.setdefault(path, []).extend(info["bad_lines"])
                for sentence in _read(part):
                    stats["sentences"] += 1
                    key = sentence_key(sentence)
                    if len(sentence.split()) < min_tokens:
                        stats["too_short"] += 1
                    elif key in excluded_keys:
                        stats["excluded"] += 1
                    elif key in seen:
                        stats["duplicates"] += 1
                    else:
                        seen.add(key)
                        out.write(sentence + "\n")
                        stats["kept"] += 1
        stats.update(inputs=[os.path.abspath(p) for p in inputs], exclude=[os.path.abspath(p) for p in exclude],
                     min_tokens=min_tokens, lower=lower)
        with atomic_output(stats_path, "w") as f:  # after the output: the output is what a rerun trusts
            json.dump(stats, f, indent=2)
        remove_work_dir(parts_dir)
    for path, lines in bad.items():
        warn_bad_utf8(path, lines)
    logger.info("%d documents -> %d sentences, %d kept in %s (%d duplicates, %d in --exclude, %d under "
                "%d tokens)", stats["documents"], stats["sentences"], stats["kept"], output_path,
                stats["duplicates"], stats["excluded"], stats["too_short"], min_tokens)
    return stats


def _plan(inputs, parts_dir, lower, workers, chunk_bytes):
    manifest, tasks, chunks = {"lower": lower, "files": []}, [], []
    per_file = []
    for p in inputs:
        size = os.path.getsize(p)
        offsets = find_offsets(p, max(workers, size // chunk_bytes + 1))
        manifest["files"].append({"path": os.path.abspath(p), "size": size, "mtime": os.path.getmtime(p),
                                  "offsets": offsets})
        per_file.append((p, offsets))
    prepare_work_dir(parts_dir, manifest)
    k = 0
    for p, offsets in per_file:
        for a, b in zip(offsets[:-1], offsets[1:]):
            part = os.path.join(parts_dir, f"part-{k:05d}")
            chunks.append((p, part))
            if not (os.path.exists(part) and os.path.exists(part + ".json")):
                tasks.append((p, a, b, part, lower))
            k += 1
    if len(tasks) < len(chunks):
        logger.info("resuming: %d of %d chunks already done", len(chunks) - len(tasks), len(chunks))
    return tasks, chunks


def _read(path: str) -> Iterable[str]:
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            yield line[:-1] if line.endswith("\n") else line
