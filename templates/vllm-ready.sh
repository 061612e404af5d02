#!/bin/sh
# Managed by vllm-fleet. Waits until vLLM lists the served model, or fails with the service's
# last log lines: at the timeout, or as soon as the server has exited twice since it was
# (re)started, so a release that cannot start is not waited for while one that is still
# loading is.
# Usage: vllm-ready HOST_LABEL URL MODEL TIMEOUT_SECONDS
# The API key is read from the root-only env file and handed to curl on stdin,
# so it never appears in any process's arguments.
set -u
label=$1 url=$2 model=$3 timeout=$4
env_file=/etc/vllm-fleet/vllm.env
max_exits=2
deadline=$(( $(date +%s) + timeout ))
why="within ${timeout}s"

# Exits of the main process since the last explicit (re)start: systemd counts the automatic
# restarts, and a server that exited and waits for its next restart is in auto-restart.
exits() {
    n=$(systemctl show -p NRestarts --value vllm.service)
    [ "$(systemctl show -p SubState --value vllm.service)" = auto-restart ] && n=$(( n + 1 ))
    echo "${n:-0}"
}

while [ "$(date +%s)" -lt "$deadline" ]; do
    models=$(sed -n 's/^VLLM_API_KEY=/Authorization: Bearer /p' "$env_file" \
        | curl -fsS --max-time 5 -H @- "$url/v1/models" 2>/dev/null) || models=""
    # jq 1.6 (Debian 12) exits 0 on empty input even with -e: never hand it nothing.
    if [ -n "$models" ] && printf '%s' "$models" \
        | jq -e --arg model "$model" 'any(.data[]?; .id == $model)' >/dev/null 2>&1; then
        echo "vLLM on $label is ready: $url lists $model"
        exit 0
    fi
    state=$(systemctl show -p ActiveState --value vllm.service)
    if [ "$state" = failed ] || [ "$state" = inactive ]; then
        why="(the service stopped: $state)"
        break
    fi
    if [ "$(exits)" -ge "$max_exits" ]; then
        why="(the server exited $(exits) times since it was started)"
        break
    fi
    sleep 2
done
echo "vLLM on $label did not list $model at $url/v1/models $why." \
     "Last lines of journalctl -u vllm:" >&2
journalctl -u vllm.service -n 40 --no-pager >&2
exit 1
