"""Conversion jobs (MP4/MOV/AVI -> MP3): the `convert` kind and seed 001's routes."""
