"""Test media made by the same ffmpeg the platform uses (testsrc video + sine audio)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from jobgate.media import ffmpeg_binary


def make_video(
    path: Path, *, seconds: float = 3.0, audio: bool = True, size: str = "160x120", rate: int = 10
) -> Path:
    """A small H.264/AAC MP4 (or MOV/AVI, by the path's extension)."""
    cmd = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate=22050"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    cmd += ["-c:a", "aac", "-shortest"] if audio else ["-an"]
    subprocess.run([*cmd, str(path)], check=True, timeout=120)
    return path


def make_long_video(path: Path, *, seconds: int) -> Path:
    """A long input that is cheap to make: a 16x16 still and lossless FLAC audio of a sine,
    so converting it costs mostly MP3 encoding (about 150x real time here)."""
    cmd = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"color=size=16x16:rate=1:duration={seconds}"]
    cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate=44100"]
    cmd += ["-ac", "2", "-c:v", "libx264", "-c:a", "flac", str(path)]
    subprocess.run(cmd, check=True, timeout=300)
    return path


def mp3_header_ok(data: bytes) -> bool:
    """An ID3v2 tag or an MPEG audio frame sync (11 set bits) opens the file."""
    return data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
