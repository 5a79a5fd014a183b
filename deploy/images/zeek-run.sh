#!/bin/sh
# zeek-run: start Zeek once the sensor's hand-off is in place (the zeek container's entrypoint).
#
# usage: zeek-run [--file PATH]... [--interface NAME]... [--chdir DIR] [--keep-hours N] -- COMMAND [ARG]...
#
# Waits until every --file exists and is not empty and every --interface exists, creates and
# enters --chdir (Zeek writes and rotates its logs in its working directory), then replaces
# itself with COMMAND, which so receives the pod's SIGTERM directly.  SIGTERM while waiting
# exits at once.
#
# --keep-hours N (with --chdir): a background sweeper deletes rotated logs
# (NAME.YYYY-MM-DD-HH-MM-SS.log, docs/zeek.md) last written more than N hours ago, at start and
# every KUBEZEEK_SWEEP_SECONDS (600); current *.log files are never touched.  0 keeps everything.
# The sweeper ends with COMMAND.  KUBEZEEK_SYS_CLASS_NET overrides /sys/class/net (for tests).
set -eu

files=""
interfaces=""
chdir=""
keep_hours=0
while [ $# -gt 0 ]; do
  case "$1" in
    --file) files="$files $2"; shift 2 ;;
    --interface) interfaces="$interfaces $2"; shift 2 ;;
    --chdir) chdir="$2"; shift 2 ;;
    --keep-hours) keep_hours="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "zeek-run: unknown option $1 (usage: zeek-run [--file P]... [--interface N]... [--chdir D] -- CMD...)" >&2; exit 2 ;;
  esac
done
if [ $# -eq 0 ]; then
  echo "zeek-run: no command given after --" >&2
  exit 2
fi
case "$keep_hours" in
  ''|*[!0-9]*) echo "zeek-run: --keep-hours needs a whole number of hours, got '$keep_hours'" >&2; exit 2 ;;
esac

trap 'echo "zeek-run: terminated while waiting" >&2; exit 143' TERM INT
sysnet="${KUBEZEEK_SYS_CLASS_NET:-/sys/class/net}"

missing() {
  for f in $files; do
    [ -s "$f" ] || { echo "file $f"; return 0; }
  done
  for i in $interfaces; do
    [ -e "$sysnet/$i" ] || { echo "interface $i"; return 0; }
  done
  return 1
}

waited=0
while what="$(missing)"; do
  if [ $((waited % 30)) -eq 0 ]; then
    echo "zeek-run: waiting for $what (written by the sensor container)" >&2
  fi
  sleep 1 &
  wait $! || true
  waited=$((waited + 1))
done

if [ -n "$chdir" ]; then
  mkdir -p "$chdir"
  cd "$chdir"
  if [ "$keep_hours" -gt 0 ]; then
    # $$ stays this process's id after the exec below: the sweeper runs as long as COMMAND does.
    (
      trap - TERM INT
      rotated='*.[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]-[0-9][0-9]-[0-9][0-9]-[0-9][0-9].log'
      while kill -0 $$ 2>/dev/null; do
        find . -maxdepth 1 -type f -name "$rotated" -mmin "+$((keep_hours * 60))" -print -delete |
          sed 's|^\./|zeek-run: deleted rotated log older than '"$keep_hours"' h: |' >&2
        sleep "${KUBEZEEK_SWEEP_SECONDS:-600}"
      done
    ) &
  fi
fi
echo "zeek-run: starting: $*" >&2
exec "$@"
