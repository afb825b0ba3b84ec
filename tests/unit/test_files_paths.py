"""`jobgate.files.normalize_path`: one spelling per path of seed 003's files namespace, and a
clear refusal (InvalidPath, a 400) for whatever could name another path than the one checked."""

from __future__ import annotations

import pytest

from jobgate.errors import InvalidRequest
from jobgate.files import MAX_PATH_BYTES, MAX_SEGMENT_BYTES, InvalidPath, normalize_path


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("/uploads/document.pdf", "/uploads/document.pdf"),
        ("uploads/document.pdf", "/uploads/document.pdf"),
        ("//uploads///document.pdf", "/uploads/document.pdf"),
        ("/data.csv", "/data.csv"),
        ("/a b/ünïcødé.txt", "/a b/ünïcødé.txt"),
        ("/cafe\u0301.txt", "/caf\u00e9.txt"),  # NFD as macOS sends it -> NFC
        ("/50% off/report.pdf", "/50% off/report.pdf"),  # a % that is no escape
        ("/.hidden/..dots.../x", "/.hidden/..dots.../x"),  # dots inside names are names
        ("/" + "a" * MAX_SEGMENT_BYTES, "/" + "a" * MAX_SEGMENT_BYTES),
    ],
)
def test_paths_are_normalized(raw, normalized):
    assert normalize_path(raw) == normalized
    assert normalize_path(normalized) == normalized  # idempotent


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("/", "empty"),
        ("///", "empty"),
        ("/uploads/../etc/passwd", "'..'"),
        ("../etc/passwd", "'..'"),
        ("/uploads/..", "'..'"),
        ("/uploads/./a.txt", "'.'"),
        ("/./a.txt", "'.'"),
        ("/uploads/%2e%2e/etc/passwd", "percent-escapes"),
        ("/uploads/%2E%2E/x", "percent-escapes"),
        ("/uploads%2f..%2fetc", "percent-escapes"),
        ("/uploads/%00", "percent-escapes"),
        ("/uploads\\..\\etc", "backslashes"),
        ("C:\\data\\x.csv", "backslashes"),
        ("/a\x00b", "NUL"),
        ("/a\nb", "control"),
        ("/a\tb", "control"),
        ("/a\x7fb", "control"),
        ("/a\x85b", "control"),  # C1 controls too
        ("/uploads/", "ends with '/'"),
        ("/a\ud800b", "Unicode"),
        ("/" + "a" * (MAX_SEGMENT_BYTES + 1), "segment"),
        ("/" + "é" * 128, "segment"),  # 256 bytes in UTF-8
        ("/a" * (MAX_PATH_BYTES // 2) + "/b", "longer than 1024"),
    ],
)
def test_bad_paths_are_refused_with_the_reason(raw, reason):
    with pytest.raises(InvalidPath) as caught:
        normalize_path(raw)
    assert reason in caught.value.message
    assert caught.value.details["reason"] in caught.value.message


def test_a_path_of_exactly_the_limit_is_accepted():
    path = "/" + "/".join(["a" * 255] * 4)  # 4 * 256 = 1024 bytes
    assert len(path.encode()) == MAX_PATH_BYTES
    assert normalize_path(path) == path


def test_invalid_path_is_a_400_error_naming_the_path():
    with pytest.raises(InvalidRequest) as caught:
        normalize_path("/x/../y")
    assert caught.value.status == 400 and caught.value.code == "INVALID_REQUEST"
    assert caught.value.details["path"] == "/x/../y"


def test_non_text_is_refused():
    with pytest.raises(InvalidPath):
        normalize_path(None)  # type: ignore[arg-type]
