"""ffmpeg: where it is, and what a media file holds (duration, audio, video).

The `imageio-ffmpeg` wheel ships an ffmpeg built with libmp3lame, so no system package is
needed; `FFMPEG_BINARY` may point at another. The wheel has no ffprobe, so `probe` reads
ffmpeg's own description of its input: the file is parsed in a process of its own, so a
hostile upload cannot crash the gateway. `probe_here` gives the same answer through PyAV
in the calling process, ~1 ms instead of ~15 ms, for processes that are sandboxes
themselves (scrape's download processes).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from typing import Any

_DURATION_RE = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_STREAM_RE = re.compile(r"Stream #\d+:\d+.*?: (Audio|Video): (\w+)")
PROBE_TIMEOUT_S = 30


class NotMedia(ValueError):
    """ffmpeg cannot read the file as audio or video."""


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None
    audio_codec: str | None
    video_codec: str | None
    format_name: str

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    def to_dict(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "has_audio": self.has_audio}


def ffmpeg_binary() -> str:
    configured = os.environ.get("FFMPEG_BINARY")
    if configured:
        return configured
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Describe a media file; NotMedia if ffmpeg finds no audio or video stream in it."""
    try:
        result = subprocess.run(
            [ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", os.fspath(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise NotMedia(f"ffmpeg could not read it within {PROBE_TIMEOUT_S} s") from None
    text = result.stderr
    streams = _STREAM_RE.findall(text)
    audio = next((codec for kind, codec in streams if kind == "Audio"), None)
    video = next((codec for kind, codec in streams if kind == "Video"), None)
    if not streams:
        raise NotMedia(_last_line(text) or "no audio or video stream")
    match = _DURATION_RE.search(text)
    duration = None
    if match:
        h, m, s = match.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    fmt = re.search(r"Input #0, ([^,]+)", text)
    return MediaInfo(duration, audio, video, fmt.group(1) if fmt else "unknown")


def probe_here(path: str | os.PathLike[str]) -> MediaInfo:
    """`probe` in this process, through PyAV (the worker's dependency, imported here only):
    the format's first name, the duration to the 1/100 s that ffmpeg shows, the first audio
    and video streams' codecs. NotMedia with FFmpeg's reason as `probe` does."""
    import av

    try:
        with av.open(os.fspath(path)) as container:
            audio = next((_codec(s) for s in container.streams.audio), None)
            video = next((_codec(s) for s in container.streams.video), None)
            micros = container.duration
            format_name = container.format.name.split(",")[0]
    except av.error.FFmpegError as exc:
        raise NotMedia(exc.strerror or str(exc)) from None
    if audio is None and video is None:
        raise NotMedia("no audio or video stream")
    duration = None if micros is None else (micros + 5_000) // 10_000 / 100  # as ffmpeg rounds
    return MediaInfo(duration, audio, video, format_name)


def _codec(stream: Any) -> str:
    """The codec's own name as ffmpeg shows it ("mp3"), not its decoder's ("mp3float")."""
    context = stream.codec_context
    return (context.codec.canonical_name if context is not None else None) or "none"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
