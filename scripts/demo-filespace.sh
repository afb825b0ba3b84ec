#!/usr/bin/env bash
# A small demo filespace holding the paths seed 000's examples name, so they work as written.
set -euo pipefail
root=${1:?usage: demo-filespace.sh CACHE_ROOT}
[ -e "$root/.jobgate-demo" ] && exit 0
mkdir -p "$root/00_Media/Farm/ProRes422" "$root/folder1" "$root/folder2"
make_file() { [ -e "$1" ] || head -c "$2" /dev/urandom > "$1"; }
for i in 00103 00104 00105 00106; do make_file "$root/00_Media/Farm/ProRes422/Farm$i.mov" 4194304; done
make_file "$root/00_Media/Farm/notes.txt" 2048
make_file "$root/00_Media/video.mp4" 2097152
make_file "$root/file1.mp4" 1048576
make_file "$root/file2.mov" 1048576
make_file "$root/folder1/clip.mp4" 524288
make_file "$root/folder2/clip.mov" 524288
touch "$root/.jobgate-demo"
echo "[demo] filespace created under $root"
