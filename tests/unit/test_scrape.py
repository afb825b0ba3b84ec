"""The scrape kind's pure parts: its params contract, the storage layout, yt-dlp's info
mapped to a video row, and the video shapes seed 002's routes answer with."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from marshmallow import ValidationError
from yt_dlp.utils import DownloadError, smuggle_url

from jobgate import kinds
from jobgate_gateway.kinds.scrape import drive_links, job_fields, video_to_dict
from jobgate_worker.kinds.scrape import describe_video, entry_id, error_text, folder_path, in_window

SPEC = kinds.get("scrape")
UTC = dt.UTC


def load(**params):
    return SPEC.load_params({"mode": "profile", "value": "khaby.lame", **params})


def test_defaults_are_the_seeds():
    params = load()
    assert params == {
        "mode": "profile",
        "value": "khaby.lame",
        "limit": 50,
        "no_watermark": True,
        "since": None,
        "until": None,
        "drive_folder_id": None,
        "video_ids": None,
    }


@pytest.mark.parametrize(
    ("given", "stored"), [("@khaby.lame", "khaby.lame"), (" #Cats ", "Cats"), ("café", "café")]
)
def test_a_leading_at_or_hash_and_whitespace_are_dropped(given, stored):
    assert load(value=given)["value"] == stored


def test_stored_params_load_again_unchanged():
    """The worker loads what the gateway stored with the same schema."""
    params = load(
        value="@x", since="2024-01-01T00:00:00Z", until="2024-12-31T23:59:59+02:00", limit=7
    )
    assert SPEC.load_params(SPEC.dump_params(params)) == params


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "user"},
        {"value": ""},
        {"value": "@"},
        {"value": "a/b"},
        {"value": ".."},
        {"value": "x" * 101},
        {"limit": 0},
        {"limit": 201},
        {"since": "2024-01-01T00:00:00"},  # not aware
        {"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"},
        {"drive_folder_id": "../up"},
        {"video_ids": []},
        {"video_ids": ["7 1"]},
        {"surprise": 1},
    ],
)
def test_refused_params(bad):
    with pytest.raises(ValidationError):
        load(**bad)


def test_mode_and_value_are_required():
    with pytest.raises(ValidationError) as err:
        SPEC.load_params({})
    assert set(err.value.messages) == {"mode", "value"}


def test_folder_layout():
    march = dt.datetime(2025, 3, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    assert folder_path(None, "profile", "a", march) == "TikTok/profile/a/2025/04"  # UTC month
    assert folder_path("team", "hashtag", "b", march) == "team/TikTok/hashtag/b/2025/04"
    now = dt.datetime.now(UTC)
    assert folder_path(None, "profile", "a", None).endswith(f"/{now:%Y}/{now:%m}")


def test_entry_ids_from_tiktok_and_from_a_feeds_guid():
    assert entry_id({"id": "7123456789012345678", "url": "https://x"}) == "7123456789012345678"
    url = smuggle_url("http://127.0.0.1/media/a.mp4", {"force_videoid": "7000"})
    assert entry_id({"url": url}) == "7000"
    assert entry_id({"url": "http://127.0.0.1/media/a.mp4"}) is None
    assert entry_id({"id": "../etc"}) is None  # ids name files and items: kept plain


def test_the_window_includes_both_ends_and_excludes_undated_entries():
    since = dt.datetime(2025, 1, 1, tzinfo=UTC)
    until = dt.datetime(2025, 1, 31, tzinfo=UTC)
    assert in_window({"timestamp": since.timestamp()}, since, until)
    assert in_window({"timestamp": until.timestamp()}, since, until)
    assert not in_window({"timestamp": until.timestamp() + 1}, since, until)
    assert in_window({"upload_date": "20250115"}, since, None)
    assert not in_window({}, since, None)
    assert in_window({}, None, None)


# Seed 002's example video, as a videos row describes it.
DESCRIBED = {
    "url": "https://www.tiktok.com/@khaby.lame/video/7123456789012345678",
    "description": "Video description",
    "author_username": "khaby.lame",
    "author_nickname": "Khabane Lame",
    "views": 1000000,
    "likes": 50000,
    "comments": 1000,
    "shares": 5000,
    "created_at_tiktok": dt.datetime(2025, 1, 10, 15, 30, tzinfo=UTC),
    "hashtags": ["funny", "comedy"],
    "music_title": "Original Sound",
    "duration": 15.5,
}


def test_a_tiktok_info_dict_maps_to_the_seeds_fields():
    info = {
        "id": "7123456789012345678",
        "webpage_url": "https://www.tiktok.com/@khaby.lame/video/7123456789012345678",
        "description": "Learn from me #Funny #comedy #funny",
        "uploader": "khaby.lame",
        "channel": "Khabane Lame",
        "view_count": 1000000,
        "like_count": 50000,
        "comment_count": 1000,
        "repost_count": 5000,
        "timestamp": 1736523000,
        "track": "Original Sound",
        "duration": 15.5,
    }
    assert describe_video(info, {"mode": "hashtag", "value": "funny"}) == {
        **DESCRIBED,
        "description": "Learn from me #Funny #comedy #funny",
    }
    # A profile's feed names no author: the profile is it. The smuggled data goes.
    url = smuggle_url("http://127.0.0.1/m/1.mp4", {"force_videoid": "1"})
    bare = describe_video({"url": url}, {"mode": "profile", "value": "alice"})
    assert bare["author_username"] == "alice" and bare["url"] == "http://127.0.0.1/m/1.mp4"


def test_the_extractors_error_text_is_kept_without_its_prefix():
    exc = DownloadError("ERROR: [generic] x: Unable to download webpage: HTTP Error 404")
    assert error_text(exc) == "[generic] x: Unable to download webpage: HTTP Error 404"


ROW = {
    **DESCRIBED,
    "id": uuid.UUID("6bb4629b-1487-477c-96fe-b762d82a099b"),
    "video_id": "7123456789012345678",
    "owner_id": uuid.uuid4(),
    "job_id": uuid.UUID("550e8400-e29b-41d4-a716-446655440000"),
    "mode": "profile",
    "value": "khaby.lame",
    "has_watermark": False,
    "file_size": 5242880,
    "status": "uploaded",
    "error": None,
    "video_file_id": uuid.UUID("11111111-1111-4111-8111-111111111111"),
    "metadata_file_id": uuid.UUID("22222222-2222-4222-8222-222222222222"),
    "folder_path": "TikTok/profile/khaby.lame/2025/01",
    "created_at": dt.datetime(2025, 1, 15, 10, 30, tzinfo=UTC),
    "updated_at": dt.datetime(2025, 1, 15, 10, 31, tzinfo=UTC),
}


def test_a_video_in_the_seeds_shape():
    body = video_to_dict(ROW)
    same = ("url", "author_username", "author_nickname", "views", "likes", "comments", "shares")
    same += ("hashtags", "music_title", "has_watermark", "file_size", "duration", "status")
    assert {k: body[k] for k in same} == {k: ROW[k] for k in same}
    assert body["id"] == "7123456789012345678" and body["record_id"] == str(ROW["id"])
    assert body["job_id"] == "550e8400-e29b-41d4-a716-446655440000"
    assert body["desc"] == "Video description"
    assert body["created_at_tiktok"] == "2025-01-10T15:30:00.000Z"
    assert body["drive_file_id"] == "11111111-1111-4111-8111-111111111111"
    assert body["drive_folder_path"] == "TikTok/profile/khaby.lame/2025/01"


def test_drive_links_point_at_the_files_api_for_stored_videos_only():
    pending = {**ROW, "video_id": "2", "video_file_id": None, "metadata_file_id": None}
    assert drive_links([ROW, pending]) == [
        {
            "video_id": "7123456789012345678",
            "video_link": "/api/v1/files/11111111-1111-4111-8111-111111111111/content",
            "metadata_link": "/api/v1/files/22222222-2222-4222-8222-222222222222/content",
            "folder_path": "TikTok/profile/khaby.lame/2025/01",
        }
    ]


def test_a_jobs_counters_are_its_items():
    job = {
        "params": {"mode": "profile", "value": "a", "limit": 50, "no_watermark": True},
        "items_total": 50,
        "items_done": 22,
        "items_failed": 1,
    }
    assert job_fields(job) == {
        "mode": "profile",
        "value": "a",
        "limit": 50,
        "no_watermark": True,
        "total_videos": 50,
        "successful_downloads": 22,
        "failed_downloads": 1,
    }
