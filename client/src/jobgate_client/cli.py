"""The `jobgate` command line (being written)."""


def main() -> int:
    raise SystemExit("jobgate: not written yet")
