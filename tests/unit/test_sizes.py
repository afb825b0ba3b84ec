import pytest

from jobgate.sizes import mib_per_second, readable_rate, readable_size


@pytest.mark.parametrize(
    ("num", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (1013645672, "966.69 MB"),  # seed 000's create response
        (64424509440, "60.0 GB"),  # seed 000's status response
        (85899345920, "80.0 GB"),
        (5 * 1024**4, "5.0 TB"),
    ],
)
def test_readable_size_matches_seed(num, text):
    assert readable_size(num) == text


def test_rates():
    assert mib_per_second(125.5 * 1024 * 1024) == 125.5
    assert readable_rate(125.5 * 1024 * 1024) == "125.5 MB/s"
