"""The configured ``data.source`` as concrete files, and those files as one lazy Ray Dataset.

Users' data is rarely one file named ``*.parquet``: Spark and Hive write a folder of ``part-*``
files next to ``_SUCCESS`` markers, exports land as globs of dated CSVs, Parquet comes as ``*.pq``
or with no extension at all, and a data set may be a list of any of these. Ray's readers expand
folders themselves, but they filter by file extension and know no globs, and an empty match fails
deep inside Ray. So the source is resolved here first, through pyarrow's filesystem layer (local
paths and buckets alike), into one sorted list of files, and Ray reads exactly those files; when
nothing matches, the error names what was configured and what was looked at.

A malformed CSV row fails inside a Ray read task with a long traceback that names neither the line
nor the reason. ``read_error`` turns a failed read into one clear ``DataSourceError``: it reads the
failing file again on the driver (pyarrow for the reason, the ``csv`` module for the line). That
runs only after a read has failed, so good files cost nothing extra.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

import pyarrow.fs as pafs

from foundry import storage
from foundry.config import SourceConfig, SourceFormat
from foundry.errors import DataSourceError

KEY = "data.source.path"
GLOB_CHARS = "*?["
MAX_LISTED = 10  # names shown from a folder when nothing matched
EXCERPT_CHARS = 80
# Bytes on disk a read block should hold at least: 12 MiB of Parquet is ~500,000 churn rows (it compresses
# ~6x), 32 MiB of CSV ~300,000. Measured on the 2,000,000-row benchmark set with 1 CPU: 16 blocks 4.0 s,
# 8 blocks 3.3 s, 4 blocks 3.0 s (Ray Data's fixed cost is ~20 ms a task, and there are 3 passes).
BLOCK_BYTES = {"parquet": 12 * 2**20, "csv": 32 * 2**20}


@dataclass(frozen=True)
class SourceFiles:
    """The files of a source: one filesystem, paths inside it (for Ray) and full URIs (for people)."""

    filesystem: pafs.FileSystem
    paths: list[str]
    uris: list[str]

    @functools.cached_property
    def sizes(self) -> list[int]:
        """Each file's size on disk (0 where the filesystem does not say); empty when the files cannot
        be listed now (the read will say why). Asked once: on object storage it is a request per file."""
        try:
            return [i.size or 0 for i in self.filesystem.get_file_info(self.paths)]
        except OSError:
            return []

    @property
    def sizes_or_zeros(self) -> list[int]:
        """``sizes``, or 0 for every file when they could not be listed: what grouping files by size takes
        (all zeros group them by count, ``parquet_files.file_groups``)."""
        return self.sizes or [0] * len(self.paths)


@dataclass(frozen=True)
class BadLine:
    line: int  # 1-based physical line of the file where the bad row starts (the header is line 1)
    problem: str
    excerpt: str


def entries(path) -> list[str]:
    """The configured ``data.source.path`` as a list of normalized entries (a string is one entry)."""
    return [storage.normalize(p) for p in ([path] if isinstance(path, str) else list(path))]


def normalized(path) -> str | list[str]:
    """The configured path in its own shape (one string or a list), normalized: for metadata."""
    return storage.normalize(path) if isinstance(path, str) else entries(path)


def describe(path) -> str:
    """The configured path in one line, for messages."""
    return ", ".join(entries(path))


def is_glob(entry: str) -> bool:
    return any(c in entry for c in GLOB_CHARS)


def is_single_file(path) -> bool:
    """One entry without glob characters: the only form a synthetic data set can be generated at."""
    return isinstance(path, str) and not is_glob(path)


def _hidden(name: str) -> bool:
    """Markers and temporaries that writers leave next to data: ``_SUCCESS``, ``_temporary/``, ``.tmp-*``."""
    return name.startswith((".", "_"))


def _uri(entry: str, inner: str) -> str:
    return f"{entry.split('://', 1)[0]}://{inner}" if "://" in entry and not entry.startswith("file://") else inner


def _listing(fs: pafs.FileSystem, folder: str, shown: str) -> str:
    """What a folder holds, for an error message: '(the folder X holds: a, b)' or that it is missing."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(folder, recursive=False, allow_not_found=True))
        is_dir = fs.get_file_info(folder).type == pafs.FileType.Directory
    except OSError as exc:
        return f"(the folder {shown} cannot be listed: {exc})"
    if not is_dir:
        return f"(the folder {shown} does not exist)"
    names = sorted(i.base_name + ("/" if i.type == pafs.FileType.Directory else "") for i in infos)
    if not names:
        return f"(the folder {shown} is empty)"
    more = f", ... {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return f"(the folder {shown} holds: {', '.join(names[:MAX_LISTED])}{more})"


def _visible_below(fs: pafs.FileSystem, folder: str, kind: pafs.FileType) -> list[str]:
    """Files (or folders) below ``folder``, at any depth, with no hidden name on the way down."""
    return [info.path for info in fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
            if info.type == kind
            and not any(_hidden(p) for p in info.path[len(folder.rstrip("/")):].lstrip("/").split("/"))]


def _walk(fs: pafs.FileSystem, folders: list[str], patterns: list[str]) -> list[pafs.FileInfo]:
    """What matches ``patterns`` below ``folders``, one path segment at a time, so only the folders
    a pattern can reach are listed (``/*.csv`` must not list the whole disk). ``*`` stays within one
    folder, ``**`` spans any number; as in a shell, a wildcard does not match a hidden name
    (``_SUCCESS``, ``.tmp``), but a segment that itself starts with ``_`` or ``.`` can."""
    head, rest = patterns[0], patterns[1:]
    if head == "**":
        reach = folders + [d for f in folders for d in _visible_below(fs, f, pafs.FileType.Directory)]
        if not rest:
            return [fs.get_file_info(f) for f in reach]
        return _walk(fs, reach, rest)
    matched = [info for folder in folders
               for info in fs.get_file_info(pafs.FileSelector(folder, recursive=False, allow_not_found=True))
               if fnmatchcase(info.base_name, head) and not (_hidden(info.base_name) and not _hidden(head))]
    if not rest:
        return matched
    return _walk(fs, [m.path for m in matched if m.type == pafs.FileType.Directory], rest)


def _glob(entry: str, key: str) -> tuple[pafs.FileSystem, list[str]]:
    """Files matching a glob entry; a matched folder contributes every visible file below it."""
    first = min(entry.index(c) for c in GLOB_CHARS if c in entry)
    base = entry[:first].rsplit("/", 1)[0]
    if "://" in entry and len(base) <= entry.index("://") + 3:
        raise DataSourceError(f"{key}: {entry}: a glob cannot stand in for the bucket name")
    fs, inner_base = storage.resolve(base or "/")
    patterns = [p for p in entry[len(base):].split("/") if p]
    found = []
    for info in _walk(fs, [inner_base], patterns):
        if info.type == pafs.FileType.File:
            found.append(info.path)
        elif info.type == pafs.FileType.Directory:
            found += _visible_below(fs, info.path, pafs.FileType.File)
    if not found:
        raise DataSourceError(f"{key}: no files match {entry} {_listing(fs, inner_base, base or '/')}")
    return fs, found


def _entry_files(entry: str, key: str) -> tuple[pafs.FileSystem, list[str]]:
    if is_glob(entry):
        return _glob(entry, key)
    fs, inner = storage.resolve(entry)
    kind = fs.get_file_info(inner).type
    if kind == pafs.FileType.File:
        return fs, [inner]
    if kind == pafs.FileType.Directory:
        kept = _visible_below(fs, inner, pafs.FileType.File)
        if not kept:
            raise DataSourceError(f"{key}: no data files below {entry}, names starting with _ or . left out "
                                  f"{_listing(fs, inner, entry)}")
        return fs, kept
    parent = entry.rsplit("/", 1)[0] or "/"
    try:
        note = " " + _listing(*storage.resolve(parent), parent)
    except Exception:  # a parent that is no path at all (a bare bucket URI): say less
        note = ""
    raise DataSourceError(f"{key}: {entry} does not exist{note}")


def resolve(source: SourceConfig) -> SourceFiles:
    """Every file of the source, sorted and de-duplicated; DataSourceError when an entry matches none.

    Each entry of a list must match at least one file: an entry that matches nothing is a typo far
    more often than an intentionally empty part, and silently training on less data is worse.
    """
    listed = entries(source.path)
    single = isinstance(source.path, str)
    filesystem, paths, uris = None, {}, {}
    for i, entry in enumerate(listed):
        key = KEY if single else f"{KEY}[{i}]"
        try:
            fs, found = _entry_files(entry, key)
        except OSError as exc:  # permissions, an unknown bucket, no credentials
            raise DataSourceError(f"{key}: cannot list {entry}: {exc}") from exc
        if filesystem is None:
            filesystem = fs
        elif not filesystem.equals(fs):
            raise DataSourceError(f"{key}: {entry} is on another filesystem ({fs.type_name}) than "
                                  f"{listed[0]} ({filesystem.type_name}); all entries must share one")
        for inner in found:
            paths[inner] = None
            uris[inner] = _uri(entry, inner)
    ordered = sorted(paths)
    return SourceFiles(filesystem, ordered, [uris[p] for p in ordered])


def _read_parquet(files: SourceFiles, num_blocks: int):
    """Every file in ``files`` read as Parquet, whatever its name, in ``num_blocks`` read tasks of
    neighbouring files (foundry/data/parquet_files.py says why not ``ray.data.read_parquet``)."""
    from foundry.data.parquet_files import read_parquet_files

    return read_parquet_files(files.filesystem, files.paths, files.sizes_or_zeros, num_blocks)


def csv_options(source: SourceConfig) -> dict:
    """pyarrow's CSV options for the source's delimiter and null markers (a null text cell too)."""
    import pyarrow.csv as pacsv

    return {"parse_options": pacsv.ParseOptions(delimiter=source.delimiter),
            "convert_options": pacsv.ConvertOptions(null_values=list(source.null_values), strings_can_be_null=True)}


def num_blocks(files: SourceFiles, source: SourceConfig) -> int:
    """How many blocks to read the files into, from their size: one per ``BLOCK_BYTES`` on disk, at most
    one per file (Ray reads a file in one task). Big enough for a task's fixed cost to vanish, small
    enough to spread over the CPUs; the benchmark set (45 MB in 16 files) is read in 4 blocks.
    Ray's V2 default read all 16 files in one task: one CPU busy."""
    sizes = files.sizes
    if not sizes:
        return len(files.paths)
    target = BLOCK_BYTES[source.format.value]
    return max(1, min(len(files.paths), -(-sum(sizes) // target)))


def open_dataset(source: SourceConfig, files: SourceFiles):
    """A lazy Ray Dataset over exactly ``files``, whatever their extensions, in ``num_blocks`` blocks."""
    import ray.data

    try:
        blocks = num_blocks(files, source)
        if source.format is SourceFormat.parquet:
            return _read_parquet(files, blocks)
        return ray.data.read_csv(files.paths, filesystem=files.filesystem, file_extensions=None,
                                 override_num_blocks=blocks, **csv_options(source))
    except Exception as exc:  # pyarrow raises many types for a corrupt or unreadable file
        raise read_error(source, files, exc) from exc


# ---- a failed read, explained ----------------------------------------------------------------------

_CONVERSION = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to ([^:]+): invalid value '(.*)'")


def _exception_text(exc: BaseException) -> str:
    """The message of an exception and of everything it was raised from (Ray nests the real one)."""
    texts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts.append(str(exc))
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "cause", None)
    return "\n".join(texts)


def _short(text: str) -> str:
    """The last line that says what went wrong, not the traceback above it."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[\w.]*(Error|Invalid|Exception)\b.*?: ", ln):
            return ln[:300]
    return (lines[-1] if lines else "unknown error")[:300]


def _named_file(files: SourceFiles, text: str) -> int | None:
    """The index of the file the error text names (the longest name wins: a.csv vs a.csv.bak)."""
    for i in sorted(range(len(files.paths)), key=lambda i: -len(files.paths[i])):
        if files.paths[i] in text or files.uris[i] in text:
            return i
    return None


def find_bad_csv_line(fs: pafs.FileSystem, path: str, delimiter: str = ",",
                      bad_value: tuple[int, str, str] | None = None) -> BadLine | None:
    """The first row of a CSV file whose field count differs from the header's, or (with
    ``bad_value=(column, type, value)`` from pyarrow's conversion error) the first row holding that
    value in that column. None when the file looks well formed. Streams the file; compressed too."""
    with fs.open_input_stream(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        header, start = None, 1
        try:
            for row in reader:
                line, start = start, reader.line_num + 1
                if not row:
                    continue  # pyarrow skips empty lines too
                if header is None:
                    header = row
                    continue
                excerpt = delimiter.join(row)
                if len(excerpt) > EXCERPT_CHARS:
                    excerpt = excerpt[:EXCERPT_CHARS] + "..."
                if len(row) != len(header):
                    return BadLine(line, f"{len(row)} field(s) where the header has {len(header)}", excerpt)
                column, type_, value = bad_value or (-1, "", "")
                if 0 <= column < len(row) and row[column] == value:
                    return BadLine(line, f"column {header[column]!r} holds {value!r} where the rows before it hold "
                                         f"{type_} (if it means missing, add it to data.source.null_values)", excerpt)
        except csv.Error as exc:
            return BadLine(start, str(exc), "")
    return None


def _csv_problem(fs: pafs.FileSystem, path: str, source: SourceConfig) -> str | None:
    """pyarrow's own message for a CSV file that fails to read as Ray reads it (streamed, one batch at
    a time, types inferred from the first), or None when it reads."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with fs.open_input_stream(path) as raw:
        try:
            reader = pacsv.open_csv(raw, read_options=pacsv.ReadOptions(use_threads=False), **csv_options(source))
            for _ in reader:
                pass
        except pa.ArrowInvalid as exc:
            return str(exc)
    return None


def _explain_csv(source: SourceConfig, fs: pafs.FileSystem, path: str) -> str | None:
    """'line N: problem: excerpt' for the first bad row of a CSV file that fails to read, pyarrow's
    message when no single row is to blame, or None when the file reads."""
    problem = _csv_problem(fs, path, source)
    if problem is None:
        return None
    conversion = _CONVERSION.search(problem)
    hint = (int(conversion.group(1)), conversion.group(2), conversion.group(3)) if conversion else None
    bad = find_bad_csv_line(fs, path, source.delimiter, hint)
    if bad is None:
        return problem
    return f"line {bad.line}: {bad.problem}" + (f": {bad.excerpt!r}" if bad.excerpt else "")


def _explain_parquet(fs: pafs.FileSystem, path: str) -> str | None:
    """pyarrow's message for a Parquet file whose footer does not read (a truncated file, a stray
    README in the folder), or None. Reads only the footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as f:
            pq.read_metadata(f)
    except (pa.ArrowException, OSError) as exc:
        return str(exc)
    return None


def read_error(source: SourceConfig, files: SourceFiles, exc: BaseException) -> DataSourceError:
    """One clear error for a failed read: the file and, for a malformed CSV row, its line and an excerpt.

    Ray reports a CSV failure as 'Failed to read CSV file: <path>' several tracebacks deep, without
    pyarrow's reason, and a bad Parquet footer without the file; so the file it names (or, if none,
    each file in turn) is read again here, on the driver, only now that the read has failed.
    """
    text = _exception_text(exc)
    named = _named_file(files, text)
    fmt = source.format.value
    for i in [named] if named is not None else range(len(files.paths)):
        try:
            explained = (_explain_csv(source, files.filesystem, files.paths[i]) if source.format is SourceFormat.csv
                         else _explain_parquet(files.filesystem, files.paths[i]))
        except Exception:  # unreadable now (gone, no permission): say what Ray said
            break
        if explained is not None:
            return DataSourceError(f"{KEY}: failed while reading {files.uris[i]} as {fmt}: {explained}")
    where = files.uris[named] if named is not None else describe(source.path)
    return DataSourceError(f"{KEY}: failed while reading {where} as {fmt}: {_short(text)}")
