"""Path normalization: the seed's three client spellings, and every way out of the root."""

import os

import pytest

from jobgate.kinds.cache import DEFAULT_CLIENT_PREFIXES
from jobgate.paths import CacheRoot, PathError, normalize_client_path

SEED_EXAMPLES = [
    "/Volumes/dmpfs/tc-east-1/00_Media/video.mp4",
    "C:\\dmpfs\\tc-east-1\\00_Media\\video.mp4",
    "/mnt/lucidlink/tc-east-1/00_Media/video.mp4",
    "00_Media/video.mp4",
    "./00_Media//video.mp4",
    "00_Media\\video.mp4",
    "c:\\DMPFS\\tc-east-1\\00_Media\\video.mp4",
]


@pytest.mark.parametrize("raw", SEED_EXAMPLES)
def test_seed_examples_name_the_same_file(raw):
    assert normalize_client_path(raw, DEFAULT_CLIENT_PREFIXES) == "00_Media/video.mp4"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("../etc/passwd", "escapes"),
        ("00_Media/../../etc/passwd", "escapes"),
        ("/Volumes/dmpfs/tc-east-1/../secret", "escapes"),
        ("C:\\dmpfs\\tc-east-1\\..\\..\\Windows", "escapes"),
        ("/etc/passwd", "not under a known client mount"),
        ("/Volumes/dmpfs/tc-east-10/file", "not under a known client mount"),
        ("D:\\other\\file.mp4", "not under a known client mount"),
        ("\\\\server\\share\\file.mp4", "UNC"),
        ("//server/share/file.mp4", "UNC"),
        ("00_Media/video\x00.mp4", "NUL"),
        ("", "empty"),
        ("   ", "empty"),
        (42, "must be a string"),
    ],
)
def test_escape_attempts_are_refused_naming_the_path(raw, reason):
    with pytest.raises(PathError) as info:
        normalize_client_path(raw, DEFAULT_CLIENT_PREFIXES)
    assert reason in info.value.reason
    assert info.value.path == str(raw)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "00_Media" / "Farm" / "deep").mkdir(parents=True)
    (root / "00_Media" / "video.mp4").write_bytes(b"v" * 10)
    (root / "00_Media" / "Farm" / "a.mov").write_bytes(b"a" * 3)
    (root / "00_Media" / "Farm" / "deep" / "b.mov").write_bytes(b"b" * 5)
    (tmp_path / "outside.txt").write_text("secret")
    return root


def test_symlink_leading_out_is_refused(tree, tmp_path):
    os.symlink(tmp_path / "outside.txt", tree / "00_Media" / "escape.txt")
    root = CacheRoot(str(tree), DEFAULT_CLIENT_PREFIXES)
    with pytest.raises(PathError, match="escapes"):
        root.resolve("00_Media/escape.txt")
    with pytest.raises(PathError, match="escapes"):
        root.expand([], ["00_Media"])


def test_symlinked_directory_leading_out_is_refused(tree, tmp_path):
    os.symlink(tmp_path, tree / "up")
    root = CacheRoot(str(tree), DEFAULT_CLIENT_PREFIXES)
    with pytest.raises(PathError, match="escapes"):
        root.resolve("up/outside.txt")


def test_expand_recursive_dedupes_and_sizes(tree):
    os.symlink(tree / "00_Media" / "video.mp4", tree / "00_Media" / "Farm" / "link.mp4")
    root = CacheRoot(str(tree), DEFAULT_CLIENT_PREFIXES)
    files, missing = root.expand(
        ["/Volumes/dmpfs/tc-east-1/00_Media/video.mp4", "00_Media/video.mp4"], ["00_Media"]
    )
    assert missing == []
    assert sorted((f.relpath, f.size) for f in files) == [
        ("00_Media/Farm/a.mov", 3),
        ("00_Media/Farm/deep/b.mov", 5),
        ("00_Media/video.mp4", 10),
    ]


def test_expand_not_recursive_takes_only_top_level_files(tree):
    root = CacheRoot(str(tree), DEFAULT_CLIENT_PREFIXES)
    files, _ = root.expand([], ["00_Media/Farm"], recursive=False)
    assert [f.relpath for f in files] == ["00_Media/Farm/a.mov"]


def test_expand_reports_every_missing_path(tree):
    root = CacheRoot(str(tree), DEFAULT_CLIENT_PREFIXES)
    files, missing = root.expand(["nope.mp4", "00_Media/video.mp4"], ["no-dir"])
    assert missing == ["nope.mp4", "no-dir"]
    assert [f.relpath for f in files] == ["00_Media/video.mp4"]


def test_server_absolute_root_path_is_accepted(tree):
    root = CacheRoot(str(tree), ())
    assert root.resolve(str(tree / "00_Media" / "video.mp4")).endswith("00_Media/video.mp4")


def test_file_and_directory_kinds_are_checked(tree):
    root = CacheRoot(str(tree), ())
    with pytest.raises(PathError, match="directory"):
        root.expand(["00_Media"], [])
    with pytest.raises(PathError, match="not a directory"):
        root.expand([], ["00_Media/video.mp4"])


def test_open_item_refuses_a_file_swapped_for_a_symlink(tree, tmp_path):
    root = CacheRoot(str(tree), ())
    cache: dict[str, str] = {}
    os.close(root.open_item("00_Media/video.mp4", cache))
    os.remove(tree / "00_Media" / "video.mp4")
    os.symlink(tmp_path / "outside.txt", tree / "00_Media" / "video.mp4")
    with pytest.raises(OSError, match="symbolic links"):
        root.open_item("00_Media/video.mp4", {})


def test_open_item_refuses_a_folder_swapped_for_a_symlink_out(tree, tmp_path):
    root = CacheRoot(str(tree), ())
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.mov").write_text("secret")
    os.rename(tree / "00_Media" / "Farm", tmp_path / "farm-moved")
    os.symlink(tmp_path / "elsewhere", tree / "00_Media" / "Farm")
    with pytest.raises(PathError, match="escapes"):
        root.open_item("00_Media/Farm/a.mov", {})


def test_open_item_refuses_a_fifo_without_blocking(tree):
    root = CacheRoot(str(tree), ())
    os.remove(tree / "00_Media" / "video.mp4")
    os.mkfifo(tree / "00_Media" / "video.mp4")
    with pytest.raises(OSError, match="not a regular file"):
        root.open_item("00_Media/video.mp4", {})


def test_storage_sweep_removes_only_stale_leftovers(tmp_path):
    import time

    from jobgate.storage import DirectoryStorage

    storage = DirectoryStorage(tmp_path / "storage")
    stale_dir = storage.scratch_dir()
    (tmp_path / "storage" / "tmp" / os.path.basename(stale_dir) / "output.mp3").write_bytes(b"x")
    stale_upload = storage.begin()
    stale_upload.close()
    fresh_dir = storage.scratch_dir()
    old = time.time() - 7200
    for path in (stale_dir, os.path.join(stale_dir, "output.mp3"), stale_upload.path):
        os.utime(path, (old, old))
    assert storage.sweep_tmp(older_than_s=3600) == 2
    assert os.listdir(storage.tmp) == [os.path.basename(fresh_dir)]
