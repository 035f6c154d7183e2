# Sourced by scripts/test and scripts/bench: starts moto's AWS emulator on a free 127.0.0.1
# port and stops it again.
#
# Needs: $venv (the venv ensure_venv made) and $moto_log (where the emulator writes). Sets
# moto_pid and exports HOOKGATE_TEST_AWS_ENDPOINT. start_emulator returns non-zero, with
# the emulator's log on stderr, when it does not answer within 10 s.

moto_pid=""

start_emulator() {
  mkdir -p "$(dirname "$moto_log")"
  local port
  port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  # scripts/moto_server.py is moto_server with atomic DynamoDB item writes and SQS message
  # move tasks, which moto lacks (see that file).
  "$venv/bin/python" scripts/moto_server.py -H 127.0.0.1 -p "$port" </dev/null >"$moto_log" 2>&1 &
  moto_pid=$!

  # Bounded: 100 polls 0.1 s apart, giving up early if the server has exited.
  if ! "$venv/bin/python" - "$port" "$moto_pid" <<'PY'; then
import os, sys, time, urllib.request

port, pid = sys.argv[1], int(sys.argv[2])
for _ in range(100):
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("moto_server exited while starting")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1):
            sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("moto_server did not answer within 10 s")
PY
    echo "--- $moto_log ---" >&2
    cat "$moto_log" >&2
    return 1
  fi
  export HOOKGATE_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
  echo "emulator at $HOOKGATE_TEST_AWS_ENDPOINT (log: $moto_log)" >&2
}

stop_emulator() {
  if [[ -n "$moto_pid" ]] && kill -0 "$moto_pid" 2>/dev/null; then
    kill "$moto_pid" 2>/dev/null || true
    # moto stops within a second; a stuck one must not hold the run (or CI) open.
    for _ in $(seq 20); do
      kill -0 "$moto_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
  fi
  moto_pid=""
}
