#!/bin/sh
# Managed by vllm-fleet. Waits until vLLM lists the served model, or fails with
# the service's last log lines.
# Usage: vllm-ready HOST_LABEL URL MODEL TIMEOUT_SECONDS
# The API key is read from the root-only env file and handed to curl on stdin,
# so it never appears in any process's arguments.
set -u
label=$1 url=$2 model=$3 timeout=$4
env_file=/etc/vllm-fleet/vllm.env
deadline=$(( $(date +%s) + timeout ))
models=""
while [ "$(date +%s)" -lt "$deadline" ]; do
    models=$(sed -n 's/^VLLM_API_KEY=/Authorization: Bearer /p' "$env_file" \
        | curl -fsS --max-time 5 -H @- "$url/v1/models" 2>/dev/null) || models=""
    case "$models" in
        *"\"id\": \"$model\""* | *"\"id\":\"$model\""*)
            echo "vLLM on $label is ready: $url lists $model"
            exit 0 ;;
    esac
    if systemctl is-failed --quiet vllm.service; then
        break
    fi
    sleep 2
done
echo "vLLM on $label did not list $model at $url/v1/models within ${timeout}s" \
     "(service state: $(systemctl is-active vllm.service)). Last lines of journalctl -u vllm:" >&2
journalctl -u vllm.service -n 40 --no-pager >&2
exit 1
