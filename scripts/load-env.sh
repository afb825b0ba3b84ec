# Source with a file name: `. scripts/load-env.sh var/dev.env`. Exports each NAME=value line
# of the file whose NAME the environment leaves unset, so a variable the user exports
# (`CACHE_ROOT=/some/filespace make run`) always wins over the file the project wrote.
while IFS='=' read -r name value; do
  case "$name" in '' | '#'*) continue ;; esac
  if [ -z "${!name+set}" ]; then export "$name=$value"; fi
done <"$1"
