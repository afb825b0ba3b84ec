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
