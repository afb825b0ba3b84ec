"""The overall percentage a job shows (`progress` of /api/v1/jobs, seed 000's `percentage`)."""

from jobgate_gateway.jobs.views import progress


def job(**fields):
    base = {"status": "running", "items_done": 0, "items_total": 0, "bytes_done": 0}
    return {**base, "bytes_total": 0, "progress_pct": None, **fields}


def test_files_and_sizes_are_averaged():
    p = progress(job(items_done=1, items_total=4, bytes_done=750, bytes_total=1000))
    assert (p["files_pct"], p["size_pct"], p["overall_pct"]) == (25, 75, 50)


def test_items_of_unknown_size_count_by_number():
    # a scrape job at 22 of 50 videos: sizes are known only once downloaded
    assert progress(job(items_done=22, items_total=50))["overall_pct"] == 44


def test_kinds_without_items_report_their_own_percentage():
    assert progress(job(progress_pct=37.9))["overall_pct"] == 37


def test_only_a_completed_job_is_100():
    assert progress(job(items_done=3, items_total=3, status="completed"))["overall_pct"] == 100
    assert (
        progress(job(items_done=2, items_total=3, bytes_done=9, bytes_total=10))["overall_pct"]
        == 78
    )
