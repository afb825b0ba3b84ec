"""The two probes answer alike: `probe` (an ffmpeg process) and `probe_here` (PyAV, used in
scrape's download processes), on real files made with ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jobgate import media
from tests.media import make_video


def _audio(path: Path, seconds: float) -> Path:
    """An audio-only file (MP3, WAV, … by the extension) of a sine tone."""
    tone = f"sine=frequency=440:duration={seconds}"
    ffmpeg = [media.ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run([*ffmpeg, "-f", "lavfi", "-i", tone, str(path)], check=True)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda d: make_video(d / "clip.mp4", seconds=2.5),
        lambda d: make_video(d / "silent.mp4", seconds=1.37, audio=False),
        lambda d: make_video(d / "clip.mov", seconds=2.0),
        lambda d: make_video(d / "clip.avi", seconds=1.5),
        lambda d: _audio(d / "tone.mp3", 1.25),
        lambda d: _audio(d / "tone.wav", 0.5),
    ],
    ids=["mp4", "mp4-no-audio", "mov", "avi", "mp3", "wav"],
)
def test_probe_here_answers_as_probe(tmp_path: Path, make) -> None:
    path = make(tmp_path)
    assert media.probe_here(path) == media.probe(path)


@pytest.mark.parametrize(
    "content", [b"just some text\n" * 100, b"", b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 500]
)
def test_probe_here_refuses_what_probe_refuses(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "not-media.mp4"
    path.write_bytes(content)
    with pytest.raises(media.NotMedia):
        media.probe(path)
    with pytest.raises(media.NotMedia) as caught:
        media.probe_here(path)
    assert str(caught.value)
