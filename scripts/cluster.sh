#!/usr/bin/env bash
# cluster.sh runs a three-node RabbitMQ cluster on this machine, beside the main broker, for
# the fault tests that kill nodes (faults/cluster_test.go):
#
#   cluster.sh start          start the nodes that are not running, join them, wait for all 3
#   cluster.sh stop           SIGKILL every node and remove the cluster's directory
#   cluster.sh status         each node's pid, then the cluster's running nodes
#   cluster.sh kill <n>       SIGKILL node n (1, 2 or 3) and wait until it is gone
#   cluster.sh restart <n>    start node n again (stopping it first if it runs) and wait until
#                             it is back in the cluster with all 3 nodes running
#   cluster.sh leader <queue> print the node that leads queue (wclN@localhost)
#
# The nodes are wcl1@localhost, wcl2@localhost and wcl3@localhost, with AMQP on 127.0.0.1:5681,
# 5682 and 5683 and distribution on 25681, 25682 and 25683. Each has its own configuration,
# data, logs and pid file under CLUSTER_DIR (default /tmp/webhookd-cluster), and no plugin, so
# that nothing clashes with the main node's ports. They run as the rabbitmq user, like the main
# node, and so share its Erlang cookie and epmd. Every command is idempotent; every wait is a
# poll bounded by CLUSTER_TIMEOUT seconds (default 120).
set -euo pipefail

readonly DIR="${CLUSTER_DIR:-/tmp/webhookd-cluster}"
readonly TIMEOUT="${CLUSTER_TIMEOUT:-120}"
readonly NODES=(1 2 3)
readonly RUN_AS=rabbitmq
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# The server's own scripts, not the /usr/sbin wrappers: those send a rabbitmq user's output to
# the main node's /var/log/rabbitmq/startup_log.
rabbit_bin() {
	local d
	for d in "${RABBITMQ_BIN:-}" /usr/lib/rabbitmq/bin; do
		if [[ -n "$d" && -x "$d/rabbitmq-server" ]]; then
			echo "$d"
			return
		fi
	done
	d="$(command -v rabbitmq-server)" || die "rabbitmq-server not found (set RABBITMQ_BIN)"
	dirname "$(readlink -f "$d")"
}
BIN="$(rabbit_bin)"
readonly BIN
RABBIT_HOME="$(getent passwd "$RUN_AS" | cut -d: -f6)"
readonly RABBIT_HOME

name() { echo "wcl$1@localhost"; }
node_dir() { echo "$DIR/wcl$1"; }
pid_file() { echo "$DIR/wcl$1/rabbitmq.pid"; }

check_node() {
	[[ "${1:-}" =~ ^[123]$ ]] || die "want a node number 1, 2 or 3, got '${1:-}'"
}

# as_rabbit runs a command as the rabbitmq user, whose home holds the Erlang cookie.
as_rabbit() {
	if [[ "$(id -un)" == "$RUN_AS" ]]; then
		"$@"
	elif [[ $EUID -eq 0 ]]; then
		runuser -u "$RUN_AS" -- "$@"
	else
		sudo -n -u "$RUN_AS" -- "$@"
	fi
}

# node_vars sets VARS to node n's environment.
node_vars() {
	local n=$1 d
	d="$(node_dir "$n")"
	VARS=(
		HOME="$RABBIT_HOME"
		RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
		RABBITMQ_NODENAME="$(name "$n")"
		RABBITMQ_USE_LONGNAME=false
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
		RABBITMQ_NODE_PORT="568$n"
		RABBITMQ_DIST_PORT="2568$n"
		RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf"
		RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
		RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
		RABBITMQ_MNESIA_BASE="$d/mnesia"
		RABBITMQ_LOG_BASE="$d/log"
		RABBITMQ_PID_FILE="$(pid_file "$n")"
		# A marker on the beam's command line (RabbitMQ 3.10 names the node at run time, so
		# the name is not there): pid_of and stop find the node's process by it.
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-webhookd_cluster_node $(name "$n")"
	)
}

# ctl runs rabbitmqctl against node n.
ctl() {
	local n=$1
	shift
	(cd "$DIR" && as_rabbit env HOME="$RABBIT_HOME" \
		RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf" \
		"$BIN/rabbitmqctl" -n "$(name "$n")" "$@")
}

# pid_of prints node n's beam process id, if that process runs. The pid file may be stale
# (the node was killed); the marker the node is started with tells its beam from another's.
pid_of() {
	local n=$1 f pid
	f="$(pid_file "$n")"
	if [[ -s "$f" ]]; then
		pid="$(tr -dc 0-9 <"$f")"
		if [[ -n "$pid" ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "-webhookd_cluster_node $(name "$n")"; then
			echo "$pid"
			return
		fi
	fi
	# The pid file is written early in the boot, and removed by stop: fall back on the marker.
	pgrep -f -- "beam.*-webhookd_cluster_node $(name "$n")( |$)" | head -n 1 || true
}

running() { [[ -n "$(pid_of "$1")" ]]; }

# booted reports whether node n's RabbitMQ application runs.
booted() { ctl "$1" -q await_startup --timeout 5 >/dev/null 2>&1; }

# running_nodes prints how many nodes node n sees running in its cluster.
running_nodes() {
	ctl "$1" -q cluster_status --formatter json 2>/dev/null | jq -r '.running_nodes | length' 2>/dev/null || echo 0
}

# members prints the cluster's disc nodes as node n sees them, one a line.
members() {
	ctl "$1" -q cluster_status --formatter json 2>/dev/null | jq -r '.disk_nodes[]' 2>/dev/null || true
}

deadline() { echo $((SECONDS + TIMEOUT)); }

# wait_for polls a command every fifth of a second until it succeeds or the deadline passes.
wait_for() {
	local until=$1 what=$2
	shift 2
	until "$@"; do
		((SECONDS < until)) || die "timed out after ${TIMEOUT}s waiting for $what"
		sleep 0.2
	done
}

prepare() {
	install -d -o "$RUN_AS" -g "$RUN_AS" -m 0755 "$DIR"
	# No plugin: the management and Prometheus listeners would clash with the main node's.
	[[ -f "$DIR/enabled_plugins" ]] || printf '[].\n' >"$DIR/enabled_plugins"
	# Like the main node's /etc/rabbitmq/rabbitmq-env.conf, without its node name.
	cat >"$DIR/rabbitmq-env.conf" <<-'EOF'
		ERL_EPMD_ADDRESS=127.0.0.1
		export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
	EOF
	chown "$RUN_AS:$RUN_AS" "$DIR/enabled_plugins" "$DIR/rabbitmq-env.conf"
	local n d
	for n in "${NODES[@]}"; do
		d="$(node_dir "$n")"
		install -d -o "$RUN_AS" -g "$RUN_AS" -m 0755 "$d" "$d/mnesia" "$d/log"
		# Its own file, so that the main node's listener (5672) is not taken from it. Quorum
		# queue leaders are spread over the nodes rather than put on the declaring client's.
		cat >"$d/rabbitmq.conf" <<-EOF
			listeners.tcp.local = 127.0.0.1:568$n
			queue_leader_locator = balanced
			log.console = false
			log.file.level = info
		EOF
		# RabbitMQ 3.10's dead-letter worker of a quorum queue (at-least-once dead-lettering
		# from the retry queues) resends a message it got no confirm for only after this
		# timeout, 3 minutes by default. A target queue whose leader was just killed can
		# refuse it until the node is back: resend every 5 s, so that the tests see it
		# through in seconds rather than minutes.
		cat >"$d/advanced.config" <<-'EOF'
			[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 5000}]}].
		EOF
		chown "$RUN_AS:$RUN_AS" "$d/rabbitmq.conf" "$d/advanced.config"
	done
}

# boot starts node n in the background unless it runs.
boot() {
	local n=$1
	if running "$n"; then
		return
	fi
	rm -f "$(pid_file "$n")"
	say "starting $(name "$n")"
	local VARS
	node_vars "$n"
	(cd "$DIR" && as_rabbit env -u RABBITMQ_ENV_LOADED "${VARS[@]}" "$BIN/rabbitmq-server" -detached \
		>>"$(node_dir "$n")/log/startup.log" 2>&1) ||
		die "$(name "$n") did not start: see $(node_dir "$n")/log"
}

# await_boot waits until node n's application runs.
await_boot() {
	local n=$1 until=$2
	wait_for "$until" "$(name "$n") to boot (logs in $(node_dir "$n")/log)" booted "$n"
}

# join makes node n (2 or 3) a member of node 1's cluster, unless it is one.
join() {
	local n=$1
	if members "$n" | grep -qx "$(name 1)"; then
		return
	fi
	say "joining $(name "$n") to $(name 1)"
	ctl "$n" -q stop_app >/dev/null
	ctl "$n" -q join_cluster "$(name 1)" >/dev/null
	ctl "$n" -q start_app >/dev/null
}

all_running() { [[ "$(running_nodes "$1")" == 3 ]]; }

# await_cluster waits until a running node sees all three nodes running.
await_cluster() {
	local until=$1 n
	for n in "${NODES[@]}"; do
		if running "$n"; then
			wait_for "$until" "3 running nodes in the cluster" all_running "$n"
			return
		fi
	done
	die "no node runs"
}

cmd_start() {
	prepare
	local n until
	until="$(deadline)"
	for n in "${NODES[@]}"; do
		boot "$n"
	done
	for n in "${NODES[@]}"; do
		await_boot "$n" "$until"
	done
	join 2
	join 3
	await_cluster "$until"
}

# kill_node sends SIGKILL to node n's beam and waits for it to be gone.
kill_node() {
	local n=$1 pid until
	pid="$(pid_of "$n")"
	if [[ -z "$pid" ]]; then
		# A node whose pid file is not written yet still answers eval.
		pid="$(ctl "$n" -q eval 'os:getpid().' 2>/dev/null | tr -dc 0-9 || true)"
	fi
	[[ -n "$pid" ]] || return 0
	kill -KILL "$pid" 2>/dev/null || true
	until="$(deadline)"
	wait_for "$until" "$(name "$n") (pid $pid) to die" gone "$pid"
	echo "$pid"
}

# gone reports whether process pid has ended: it is no more, or a zombie nobody reaped yet.
gone() {
	local state
	kill -0 "$1" 2>/dev/null || return 0
	state="$(awk '{ print $3 }' 2>/dev/null </proc/"$1"/stat)" || return 0
	[[ "$state" == Z ]]
}

cmd_kill() {
	check_node "${1:-}"
	[[ -d "$DIR" ]] || return 0
	kill_node "$1"
}

cmd_restart() {
	check_node "${1:-}"
	local n=$1 until
	[[ -d "$DIR/wcl$n/mnesia" ]] || die "no cluster here: run start first"
	until="$(deadline)"
	if running "$n"; then
		ctl "$n" -q stop >/dev/null 2>&1 || true
		# A node that does not stop in time is killed.
		local stopping=$((SECONDS + 30))
		while running "$n" && ((SECONDS < stopping)); do
			sleep 0.2
		done
		kill_node "$n" >/dev/null
	fi
	boot "$n"
	await_boot "$n" "$until"
	await_cluster "$until"
}

cmd_stop() {
	local n
	for n in "${NODES[@]}"; do
		kill_node "$n" >/dev/null
	done
	# The pid files are gone with the directory; nothing of ours may be left running.
	local left
	left="$(pgrep -f -- "beam.*-webhookd_cluster_node wcl" || true)"
	if [[ -n "$left" ]]; then
		kill -KILL $left 2>/dev/null || true
	fi
	rm -rf "$DIR"
}

cmd_status() {
	local n pid up=""
	for n in "${NODES[@]}"; do
		pid="$(pid_of "$n")"
		echo "$(name "$n") amqp=127.0.0.1:568$n pid=${pid:--}"
		[[ -n "$pid" && -z "$up" ]] && up=$n
	done
	if [[ -n "$up" ]]; then
		ctl "$up" -q cluster_status --formatter json 2>/dev/null |
			jq -r '"running: \(.running_nodes | sort | join(" "))"' || echo "running: ?"
	else
		echo "running: none"
	fi
}

cmd_leader() {
	local queue="${1:-}" n
	[[ -n "$queue" ]] || die "usage: cluster.sh leader <queue>"
	for n in "${NODES[@]}"; do
		running "$n" || continue
		local out
		if out="$(ctl "$n" -q list_queues --no-table-headers name leader 2>/dev/null)"; then
			local leader
			leader="$(awk -F'\t' -v q="$queue" '$1 == q { print $2 }' <<<"$out")"
			[[ -n "$leader" ]] || die "no queue $queue in the cluster"
			echo "$leader"
			return
		fi
	done
	die "no node answers"
}

main() {
	local cmd="${1:-}"
	shift || true
	case "$cmd" in
	start) cmd_start ;;
	stop) cmd_stop ;;
	status) cmd_status ;;
	kill) cmd_kill "$@" ;;
	restart) cmd_restart "$@" ;;
	leader) cmd_leader "$@" ;;
	*)
		echo "usage: cluster.sh start|stop|status|kill <n>|restart <n>|leader <queue>" >&2
		exit 2
		;;
	esac
}

main "$@"
