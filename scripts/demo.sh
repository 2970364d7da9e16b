#!/usr/bin/env bash
# make demo: `make run`'s embedded Airflow wired to a SIMULATED cluster, so a newcomer can
# click through a deploy, a sweep, a scale and a report without Kubernetes or a GPU.
#
#   scripts/demo.sh                       # what `make demo` runs (after `make setup`)
#   AIRFLOW_PORT=8090 scripts/demo.sh     # another port
#   MLINFRA_DEMO_DIR=/tmp/d scripts/demo.sh   # another state folder (default .demo/)
#
# Started here, stopped together on Ctrl-C:
#   * scripts/demo_cluster.py: the Kubernetes API stand-in and the TF Serving stand-in
#     (tests/support/), linked like a cluster; it writes $DEMO/env.sh with the connections;
#   * airflow standalone with AIRFLOW_HOME=$DEMO/airflow (not make run's .airflow), this
#     checkout's dags/ and plugins/, and MLINFRA_DEMO=1 (the fleet page says "simulated").
# GPUs are simulated too: scripts/demo_nvml/ shadows pynvml for the sweep's GPU collector.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO="${MLINFRA_DEMO_DIR:-$ROOT/.demo}"
BIN="${MLINFRA_VENV:-$ROOT/.venv}/bin"
PORT="${AIRFLOW_PORT:-8080}"
READY_TIMEOUT_S="${MLINFRA_DEMO_READY_TIMEOUT:-300}"

[[ -x "$BIN/airflow" ]] || { echo "demo: $BIN/airflow not found; run 'make setup' first" >&2; exit 1; }
mkdir -p "$DEMO/logs"
export AIRFLOW_HOME="$DEMO/airflow"
mkdir -p "$AIRFLOW_HOME"

cluster_pid=""
airflow_pid=""
# Each child runs in its own process group (setsid), so stopping the demo stops everything it
# started, Airflow's scheduler, api-server, triggerer, dag-processor and task processes included.
stop_group() {
	local pgid=$1 i
	kill -TERM -- "-$pgid" 2>/dev/null || return 0
	for i in $(seq 1 40); do
		kill -0 -- "-$pgid" 2>/dev/null || return 0
		sleep 0.5
	done
	kill -KILL -- "-$pgid" 2>/dev/null || true
}
cleanup() {
	trap - EXIT INT TERM
	echo "demo: stopping"
	[[ -n "$airflow_pid" ]] && stop_group "$airflow_pid"
	[[ -n "$cluster_pid" ]] && stop_group "$cluster_pid"
	# The TF Serving stand-in runs in a session of its own (demo_cluster.py lists it in
	# $DEMO/pgids): if the cluster script was killed before it stopped it, stop it here.
	local pgid
	for pgid in $(cat "$DEMO/pgids" 2>/dev/null); do
		stop_group "$pgid"
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "demo: starting the simulated cluster (log: $DEMO/logs/cluster.log)"
: >"$DEMO/pgids" # process groups to stop; the cluster adds the TF Serving stand-in's
setsid "$BIN/python" "$ROOT/scripts/demo_cluster.py" --dir "$DEMO" >"$DEMO/logs/cluster.log" 2>&1 &
cluster_pid=$!
echo "$cluster_pid" >>"$DEMO/pgids"

deadline=$((SECONDS + READY_TIMEOUT_S))
until [[ -f "$DEMO/env.sh" ]]; do
	if ! kill -0 "$cluster_pid" 2>/dev/null; then
		echo "demo: the simulated cluster exited; its log:" >&2
		tail -n 40 "$DEMO/logs/cluster.log" >&2
		exit 1
	fi
	if ((SECONDS > deadline)); then
		echo "demo: the simulated cluster was not ready after ${READY_TIMEOUT_S}s; see $DEMO/logs/cluster.log" >&2
		exit 1
	fi
	sleep 0.5
done
# What a shell needs to reach this demo's Airflow and store from the CLI (README:
# `source .demo/env.sh`, then `mlinfra ...` or `airflow ...`): added to the cluster's
# connections, so one file sets up a second terminal.
cat >>"$DEMO/env.sh" <<ENV
export AIRFLOW_HOME=$(printf %q "$AIRFLOW_HOME")
export AIRFLOW__CORE__DAGS_FOLDER=$(printf %q "$ROOT/dags")
export AIRFLOW__CORE__PLUGINS_FOLDER=$(printf %q "$ROOT/plugins")
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API__PORT=$PORT
export MLINFRA_REPORTS_BASE=$(printf %q "${MLINFRA_REPORTS_BASE:-file://$DEMO/reports}")
${MLINFRA_FLEET_FILE:+export MLINFRA_FLEET_FILE=$(printf %q "$MLINFRA_FLEET_FILE")}
export PATH=$(printf %q "$BIN"):\$PATH
ENV
# shellcheck disable=SC1091
source "$DEMO/env.sh"

export MLINFRA_DEMO=1
export PYTHONPATH="$ROOT/scripts/demo_nvml:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$BIN:$PATH"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
# Created paused, unpaused by scripts/demo_unpause.py once the API server answers: a sweep
# started earlier would have its tasks retry against an Execution API not yet listening.
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__API__PORT="$PORT"
# Task processes talk to the API server's Execution API: on this port, not the default 8080.
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$PORT/execution/"
export MLINFRA_REPORTS_BASE="${MLINFRA_REPORTS_BASE:-file://$DEMO/reports}"
# The stand-ins answer in milliseconds: poll them often so the UI moves at once.
export MLINFRA_DEPLOY_POLL_INTERVAL="${MLINFRA_DEPLOY_POLL_INTERVAL:-1s}"
export MLINFRA_DEPLOY_ROLLOUT_TIMEOUT="${MLINFRA_DEPLOY_ROLLOUT_TIMEOUT:-3m}"
export MLINFRA_DEPLOY_MODEL_TIMEOUT="${MLINFRA_DEPLOY_MODEL_TIMEOUT:-3m}"
export MLINFRA_DEPLOY_PROGRESS_DEADLINE="${MLINFRA_DEPLOY_PROGRESS_DEADLINE:-3m}"

cat <<EOF

  mlinfra demo: THE CLUSTER IS SIMULATED
  ---------------------------------------
  Kubernetes API : $MLINFRA_DEMO_K8S_URL   (stand-in, Deployments serving/half-plus-two and serving/resnet50-classifier)
  TF Serving     : $MLINFRA_DEMO_TF_SERVING_REST   (stand-in serving half_plus_two, a real SavedModel)
  GPUs           : two simulated H100s (scripted NVML)
  Metrics store  : $DEMO/store.db

  Airflow UI     : http://localhost:$PORT   (user admin; password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)
  ML Fleet page  : http://localhost:$PORT/plugin/ml-fleet

  Try: model_deploy -> Trigger (model half-plus-two, version 2); infra_health_sweep runs every 5 minutes;
       metrics_report -> Trigger -> Backfill a few past days. Ctrl-C stops everything.

EOF

setsid "$BIN/airflow" standalone &
airflow_pid=$!
echo "$airflow_pid" >>"$DEMO/pgids"
setsid "$BIN/python" "$ROOT/scripts/demo_unpause.py" --base "http://127.0.0.1:$PORT" --home "$AIRFLOW_HOME" \
	--dags "$ROOT/dags" --timeout "$READY_TIMEOUT_S" &
echo "$!" >>"$DEMO/pgids"
wait "$airflow_pid"
