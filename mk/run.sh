#!/bin/sh
# mk/run.sh BUILD - `make run`: the demo instance in ./run, created on the
# first run (ports 10000 + the standard ones, a demo user with a random
# password), then master in the foreground logging to the terminal.
set -eu

build=${1:-build}
bin=$(cd "$build/bin" && pwd)

if [ ! -e run ]; then
	"$bin/pochta" init ./run --port-base 10000
	password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	# Half an instance would be kept forever: start again next time.
	if ! printf '%s\n' "$password" | "$bin/pochta" -c ./run/conf \
	    user add demo@example.test --password-stdin; then
		rm -rf run
		exit 1
	fi
	umask 077
	printf '%s\n' "$password" > run/demo-password
	echo
	echo "demo user:  demo@example.test"
	echo "password:   $password   (also in run/demo-password)"
	echo
fi
exec "$bin/pochta" -c ./run/conf start -f
