#!/usr/bin/env bash
# `make run`: the web server and the import worker, started together and stopped together.
#
# Each runs in a session of its own (setsid), so a Ctrl-C in the terminal reaches only this
# script, which then sends each of them exactly one SIGTERM: the worker finishes its batch and
# hands the import back to the queue, gunicorn finishes the requests in flight. (Were they in
# the terminal's process group they would get the Ctrl-C as well, and the worker would read the
# script's SIGTERM as a second signal: "stop now".) A second Ctrl-C passes "stop now" on to
# the worker. If either process ends by itself, the other is stopped too and the script fails.
set -u
VENV=${VENV:-.venv}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}

setsid nice -n 10 "$VENV/bin/python" manage.py run_import --worker &
worker=$!
# No control socket: it lives at one fixed path per user, which a second `make run` would take.
setsid "$VENV/bin/gunicorn" customerpanel.wsgi --bind "$HOST:$PORT" --worker-class gthread \
  --workers 2 --threads 8 --timeout 120 --access-logfile - --no-control-socket &
web=$!

stopping=""
stop() {
  stopping=yes
  trap stop_now INT TERM
  kill -TERM "$worker" "$web" 2>/dev/null
}
stop_now() {
  trap '' INT TERM
  kill -TERM "$worker" 2>/dev/null
}
trap stop INT TERM

status=0
wait -n  # a child ended, or a signal ran its trap
if [ -z "$stopping" ]; then
  echo "run: the web server or the import worker stopped; stopping the other." >&2
  status=1
  stop
fi
# `wait` returns early (above 128) each time a trapped signal arrives; 0 once both are gone.
until wait; do :; done
exit "$status"
