#!/bin/sh
# The API image's entrypoint. A Ray driver must run on a Ray node: `ray.init(address=HEAD:6379)`
# from a container without a raylet fails ("No node info found ... Failed to connect to Ray
# cluster"). So with ASSAY_RAY_ADDRESS set, this container first joins that cluster as a node
# with no CPUs (no stage work is scheduled here: it hosts only the drivers of the jobs that
# `assay serve --ray ADDRESS` starts), then runs the command. The shell stays PID 1: it forwards
# SIGTERM/SIGINT to the command, reaps Ray's daemonized processes, and stops the node at exit.
set -eu
if [ -n "${ASSAY_RAY_ADDRESS:-}" ]; then
  tries=0
  until ray start --address="$ASSAY_RAY_ADDRESS" --num-cpus=0 --disable-usage-stats \
          --object-store-memory="${ASSAY_RAY_OBJECT_STORE_BYTES:-500000000}" >/tmp/ray-start.log 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge "${ASSAY_RAY_START_TRIES:-30}" ]; then
      cat /tmp/ray-start.log >&2
      echo "assay-api-entrypoint: could not join the Ray cluster at $ASSAY_RAY_ADDRESS" >&2
      exit 1
    fi
    sleep 2
  done
  echo "assay-api-entrypoint: joined the Ray cluster at $ASSAY_RAY_ADDRESS as a CPU-less node" >&2
fi
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
# wait returns early when a trapped signal arrives: wait again until the command has ended,
# then once more for its own exit status
while kill -0 "$child" 2>/dev/null; do wait "$child" || true; done
status=0
wait "$child" || status=$?
[ -n "${ASSAY_RAY_ADDRESS:-}" ] && ray stop --force >/dev/null 2>&1 || true
exit "$status"
