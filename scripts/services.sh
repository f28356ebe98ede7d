#!/usr/bin/env bash
# services.sh makes the machine ready for webhookd's tests, benchmarks and `make run`:
#
#   - installs with apt-get whatever is missing among rabbitmq-server, mariadb-server,
#     mariadb-client, libxml2-utils (xmllint), php-cli, curl and prometheus (the tests use
#     xmllint and php as real consumers of the XML and form payloads, and prometheus's promtool
#     to check deploy/prometheus/alerts.yaml; the Prometheus server itself is kept from running);
#   - for the portal's browser test (api/portal_browser_test.go): installs chromium, nodejs, npm
#     and fonts-dejavu-core with apt-get where missing, and the playwright-core version that
#     api/testdata/browser/package.json pins, with npm ci into that folder (playwright's own
#     browser download is never used: the test drives Debian's /usr/bin/chromium);
#   - starts RabbitMQ and MariaDB when they do not answer, without relying on systemd;
#   - waits, up to SERVICES_TIMEOUT seconds (default 60), until both answer and 5672 accepts;
#   - enables RabbitMQ's feature flags (quorum queues);
#   - makes the default DSN root@tcp(127.0.0.1:3306)/webhookd log in, and raises
#     max_connections to 500 for the parallel tests.
#
# It is idempotent and prints nothing when all is well. It runs as root, or as a user with
# sudo: installing, starting, RabbitMQ's tools and the unix_socket login of MariaDB's root need
# root, but checking servers that are up and well does not, so that a user is not asked for a
# password when there is nothing to do.
set -euo pipefail

readonly TIMEOUT="${SERVICES_TIMEOUT:-60}"
readonly AMQP_HOST=127.0.0.1 AMQP_PORT=5672
readonly MYSQL_HOST=127.0.0.1 MYSQL_PORT=3306
readonly MIN_CONNECTIONS=500
# RabbitMQ's and MariaDB's tools live in /usr/sbin, which a user's PATH often lacks.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/webhookd-services.XXXXXX")"
readonly LOG_DIR
POLICY_RC_D=""
cleanup() {
	if [[ -n "$POLICY_RC_D" ]]; then
		as_root rm -f "$POLICY_RC_D" || true
	fi
	rm -rf "$LOG_DIR"
}
trap cleanup EXIT

say() { printf 'services.sh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# show_log prints a captured log after a failure, so that the reason is visible.
show_log() {
	if [[ -s "$1" ]]; then
		sed 's/^/    /' "$1" | tail -n 40 >&2
	fi
}

# as_root runs a command as root: directly when we are root, else through sudo. Without a
# terminal sudo must not wait for a password that nobody can type, so it runs with -n.
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		if [[ -t 0 ]]; then
			sudo "$@"
		else
			sudo -n "$@"
		fi
	else
		die "need root for '$*': run as root or install sudo"
	fi
}

# can_root reports whether as_root would work without asking for a password.
can_root() { [[ $EUID -eq 0 ]] || sudo -n true 2>/dev/null; }

# deadline_passed reports whether TIMEOUT seconds have gone by since $1 (a value of SECONDS).
deadline_passed() { (( SECONDS - $1 >= TIMEOUT )); }

# amqp_answers reports whether a broker speaks AMQP on AMQP_HOST:AMQP_PORT, as a client sees it
# and without privileges: it answers the protocol header with a connection.start method frame,
# whose first byte is the frame type 1.
amqp_answers() {
	# shellcheck disable=SC2016 # the inner script expands its own arguments
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		printf "AMQP\x00\x00\x09\x01" >&3
		IFS= read -r -N 1 -d "" frame <&3 && [[ $frame == "$(printf "\x01")" ]]
	' amqp_answers "$AMQP_HOST" "$AMQP_PORT" 2>/dev/null
}

mysql_client() {
	if command -v mariadb >/dev/null 2>&1; then echo mariadb; else echo mysql; fi
}
mysql_admin() {
	if command -v mariadb-admin >/dev/null 2>&1; then echo mariadb-admin; else echo mysqladmin; fi
}
mysqld_binary() {
	local b
	for b in /usr/sbin/mariadbd /usr/sbin/mysqld; do
		if [[ -x "$b" ]]; then
			echo "$b"
			return
		fi
	done
	return 1
}

# --- packages ---------------------------------------------------------------------------

missing_packages() {
	local missing=()
	[[ -x /usr/sbin/rabbitmq-server ]] || missing+=(rabbitmq-server)
	mysqld_binary >/dev/null || missing+=(mariadb-server)
	command -v mariadb >/dev/null 2>&1 || command -v mysql >/dev/null 2>&1 || missing+=(mariadb-client)
	command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
	command -v php >/dev/null 2>&1 || missing+=(php-cli)
	command -v curl >/dev/null 2>&1 || missing+=(curl)
	[[ -x /usr/bin/chromium ]] || missing+=(chromium)
	command -v node >/dev/null 2>&1 || missing+=(nodejs)
	command -v npm >/dev/null 2>&1 || missing+=(npm)
	[[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || missing+=(fonts-dejavu-core)
	command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
	echo "${missing[@]}"
}

# keep_prometheus_server_off stops and disables the Prometheus server that the prometheus
# package starts under systemd: only its promtool is wanted, and the server's port, 9090, is
# webhookd's admin address by default. Without systemd the package's start script is kept from
# running (policy-rc.d) and there is nothing to do.
keep_prometheus_server_off() {
	if [[ -d /run/systemd/system ]] && systemctl is-enabled --quiet prometheus 2>/dev/null; then
		as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
	fi
}

install_packages() {
	local -a pkgs
	read -r -a pkgs <<<"$(missing_packages)"
	(( ${#pkgs[@]} > 0 )) || return 0
	command -v apt-get >/dev/null 2>&1 ||
		die "missing ${pkgs[*]}, and apt-get is not here to install them: install them by hand"

	say "installing ${pkgs[*]}"
	# Without systemd the packages' own start scripts are unreliable and would fail the whole
	# install; keep them from running, as Docker images do, and start the servers below.
	if [[ ! -d /run/systemd/system && ! -e /usr/sbin/policy-rc.d ]]; then
		POLICY_RC_D=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' | as_root tee "$POLICY_RC_D" >/dev/null
		as_root chmod 0755 "$POLICY_RC_D"
	fi
	local log="$LOG_DIR/apt.log"
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=300 >"$log" 2>&1; then
		show_log "$log"
		die "apt-get update failed"
	fi
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=300 \
		"${pkgs[@]}" >"$log" 2>&1; then
		show_log "$log"
		die "apt-get install ${pkgs[*]} failed"
	fi
	if [[ -n "$POLICY_RC_D" ]]; then
		as_root rm -f "$POLICY_RC_D"
		POLICY_RC_D=""
	fi
	local still
	still="$(missing_packages)"
	[[ -z "$still" ]] || die "still missing after apt-get install: $still"
	if [[ " ${pkgs[*]} " == *" prometheus "* ]]; then
		keep_prometheus_server_off
	fi
}

# --- the portal's browser test ------------------------------------------------------------

BROWSER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/api/testdata/browser"
readonly BROWSER_DIR
# The pinned playwright-core runs on Node.js 18 and later: Debian 12's nodejs will do.
readonly MIN_NODE_MAJOR=18

# install_playwright installs the playwright-core that package.json pins into BROWSER_DIR
# unless that version is there already, which two reads of package.json files tell.
install_playwright() {
	local want have major
	want="$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' "$BROWSER_DIR/package.json")"
	[[ -n "$want" ]] || die "no playwright-core version in $BROWSER_DIR/package.json"
	local installed="$BROWSER_DIR/node_modules/playwright-core/package.json"
	if [[ -f "$installed" ]]; then
		have="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$installed" | head -n 1)"
		[[ "$have" == "$want" ]] && return 0
	fi
	major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
	(( major >= MIN_NODE_MAJOR )) ||
		die "the portal's browser test needs Node.js $MIN_NODE_MAJOR or later, this machine has $(node --version 2>/dev/null || echo none)"
	say "installing playwright-core $want for the portal's browser test"
	local log="$LOG_DIR/npm.log"
	if ! (cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
		show_log "$log"
		die "npm ci in $BROWSER_DIR failed"
	fi
}

# --- RabbitMQ ---------------------------------------------------------------------------

rabbit_ping() { as_root rabbitmq-diagnostics -q ping >/dev/null 2>&1; }

rabbit_running() { pgrep -u rabbitmq beam.smp >/dev/null 2>&1; }

start_rabbitmq() {
	local log="$LOG_DIR/rabbitmq-start.log"
	if [[ -d /run/systemd/system ]] && as_root systemctl start rabbitmq-server >"$log" 2>&1; then
		return
	fi
	# The Debian wrapper switches to the rabbitmq user itself when started as root.
	if ! as_root rabbitmq-server -detached >"$log" 2>&1; then
		show_log "$log"
		die "rabbitmq-server -detached failed"
	fi
}

rabbit_failure() {
	say "RabbitMQ $1 within ${TIMEOUT}s"
	show_log "$LOG_DIR/rabbitmq-start.log"
	local f
	for f in /var/log/rabbitmq/startup_err /var/log/rabbitmq/rabbit@*.log; do
		if [[ -s "$f" ]]; then
			say "last lines of $f:"
			show_log "$f"
		fi
	done
	die "RabbitMQ is not usable on $AMQP_HOST:$AMQP_PORT"
}

# kick_rabbitmq starts RabbitMQ when it neither answers nor runs; a node that already runs may
# still be booting, and is waited for rather than started twice.
kick_rabbitmq() {
	if amqp_answers; then
		RABBIT_UP=true
	elif ! rabbit_ping && ! rabbit_running; then
		say "starting RabbitMQ"
		start_rabbitmq
		RABBIT_STARTED=true
	fi
}

wait_rabbitmq() {
	if ! $RABBIT_UP; then
		until rabbit_ping; do
			deadline_passed "$START" && rabbit_failure "did not answer rabbitmq-diagnostics ping"
			# A node that was stopping when we looked has exited by now: start it.
			if ! $RABBIT_STARTED && ! rabbit_running; then
				say "starting RabbitMQ"
				start_rabbitmq
				RABBIT_STARTED=true
			fi
			sleep 1
		done
		local pinged=$SECONDS tried_start_app=false
		until amqp_answers; do
			deadline_passed "$START" && rabbit_failure "did not open port $AMQP_PORT"
			# The node answers but its application does not listen: stopped with stop_app.
			if ! $tried_start_app && (( SECONDS - pinged >= 10 )); then
				tried_start_app=true
				as_root rabbitmqctl -q start_app >/dev/null 2>&1 || true
			fi
			sleep 1
		done
	fi
	enable_feature_flags
}

# enable_feature_flags makes quorum queues available on a node upgraded from an old version
# (new nodes have them on). Enabling is harmless where the flags are already on; versions without
# "all" are left alone, and so is a node we could only reach by asking for a password.
enable_feature_flags() {
	if can_root; then
		as_root rabbitmqctl -q enable_feature_flag all >/dev/null 2>&1 || true
	fi
}

# --- MariaDB ----------------------------------------------------------------------------

# MARIADBD_OUT keeps what a server started here prints, where stock Debian sends its errors.
MARIADBD_OUT=/tmp/webhookd-mariadbd.log
if [[ -d /var/log/mysql ]]; then MARIADBD_OUT=/var/log/mysql/webhookd-mariadbd.log; fi
readonly MARIADBD_OUT

mysql_ping() { "$(mysql_admin)" --connect-timeout=2 -s ping >/dev/null 2>&1; }

mysql_running() { pgrep -u mysql -x 'mariadbd|mysqld' >/dev/null 2>&1; }

start_mariadb() {
	local log="$LOG_DIR/mariadb-start.log" bin
	bin="$(mysqld_binary)" || die "no mariadbd or mysqld in /usr/sbin"
	if [[ -d /run/systemd/system ]] && as_root systemctl start mariadb >"$log" 2>&1; then
		return
	fi
	# The server keeps its socket and pid file here; /run is a tmpfs that starts empty.
	as_root install -d -o mysql -g mysql -m 0755 /run/mysqld
	if ! as_root start-stop-daemon --start --oknodo --background --output "$MARIADBD_OUT" \
		--exec "$bin" -- --user=mysql >"$log" 2>&1; then
		show_log "$log"
		die "start-stop-daemon could not start $bin"
	fi
}

mariadb_failure() {
	say "MariaDB did not answer within ${TIMEOUT}s"
	show_log "$LOG_DIR/mariadb-start.log"
	local f
	for f in "$MARIADBD_OUT" /var/log/mysql/error.log; do
		if [[ -s "$f" ]]; then
			say "last lines of $f:"
			show_log "$f"
		fi
	done
	die "MariaDB is not usable"
}

# kick_mariadb starts MariaDB unless it answers or runs; a server that runs may be starting or
# stopping, which wait_mariadb tells apart.
kick_mariadb() {
	if mysql_ping; then
		MARIADB_UP=true
	elif ! mysql_running; then
		say "starting MariaDB"
		start_mariadb
		MARIADB_STARTED=true
	fi
}

wait_mariadb() {
	if ! $MARIADB_UP; then
		until mysql_ping; do
			deadline_passed "$START" && mariadb_failure
			# A server that was shutting down when we looked has exited by now: start it.
			if ! $MARIADB_STARTED && ! mysql_running; then
				say "starting MariaDB"
				start_mariadb
				MARIADB_STARTED=true
			fi
			sleep 1
		done
	fi
	ensure_tcp_login
	raise_max_connections
}

# tcp_sql runs SQL as the default DSN does: root, no password, TCP to 127.0.0.1. --no-defaults
# keeps a user's ~/.my.cnf from changing what is tested.
tcp_sql() {
	"$(mysql_client)" --no-defaults --protocol=TCP -h "$MYSQL_HOST" -P "$MYSQL_PORT" -uroot \
		--connect-timeout=5 -N -B -e "$1"
}

# socket_sql runs SQL as root through the unix socket, where apt's MariaDB lets root in.
socket_sql() { as_root "$(mysql_client)" -uroot -N -B -e "$1"; }

# ensure_tcp_login makes root@tcp(127.0.0.1:3306) log in without a password. apt's MariaDB
# lets root@localhost in only through unix_socket; TCP from 127.0.0.1 arrives as root@localhost
# too, unless skip-name-resolve is set, in which case it arrives as root@127.0.0.1.
ensure_tcp_login() {
	local err="$LOG_DIR/mysql-login.log"
	tcp_sql 'SELECT 1' >/dev/null 2>"$err" && return
	# 1045: access denied; 1130: no account matches the host the connection comes from.
	if ! grep -qE 'Access denied|1045|1130|not allowed to connect' "$err"; then
		show_log "$err"
		die "cannot reach MariaDB over TCP at $MYSQL_HOST:$MYSQL_PORT (is skip-networking or another bind-address set?)"
	fi
	say "letting root log in over TCP from $MYSQL_HOST without a password (development setup)"
	socket_sql "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')" \
		>/dev/null 2>"$err" || { show_log "$err"; die "cannot change root@localhost through the socket"; }
	tcp_sql 'SELECT 1' >/dev/null 2>"$err" && return
	socket_sql "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
		ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '';
		GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION" \
		>/dev/null 2>"$err" || { show_log "$err"; die "cannot create root@127.0.0.1 through the socket"; }
	if ! tcp_sql 'SELECT 1' >/dev/null 2>"$err"; then
		show_log "$err"
		die "root still cannot log in over TCP at $MYSQL_HOST:$MYSQL_PORT"
	fi
}

# raise_max_connections sets the limit at run time only: the tests run many workers, each with
# its own pool, in parallel. A restarted server goes back to its configuration until this runs.
raise_max_connections() {
	local current
	current="$(tcp_sql 'SELECT @@GLOBAL.max_connections')" ||
		die "cannot read max_connections"
	if (( current < MIN_CONNECTIONS )); then
		tcp_sql "SET GLOBAL max_connections = $MIN_CONNECTIONS" ||
			die "cannot raise max_connections to $MIN_CONNECTIONS"
	fi
}

main() {
	install_packages
	install_playwright
	# Both servers are started first and waited for afterwards, so that their boots overlap.
	RABBIT_UP=false MARIADB_UP=false RABBIT_STARTED=false MARIADB_STARTED=false
	START=$SECONDS
	kick_mariadb
	kick_rabbitmq
	wait_mariadb
	wait_rabbitmq
}

# Sourcing the file (to try one step by hand) defines the functions without running them.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	main "$@"
fi
