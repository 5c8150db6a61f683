#!/bin/bash
# run.sh [BUILD_DIR] - the mount options are one list: src/options.c's table,
# which `thpfs --help` prints (thpfs_options_help), must be repeated option
# for option, with the same "key=SYNTAX", in include/thpfs.h, the README's
# "Mount options" table and docs/fuse.md's option table; and the daemon
# must accept every option of the list.  Ends with "N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:-build}
case $B in /*) ;; *) B=$root/$B ;; esac
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "PASS: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
cd "$root" || exit 1

help=$("$B/thpfs" --help 2>/dev/null)
# "    key=SYNTAX   meaning" lines of the "thpfs options" section
lib=$(awk '/^thpfs options/ { on = 1; next } on && /^$/ { exit } on && /^    [a-z_]+=/ { print $1 }' <<<"$help" | sort)
daemon=$(awk '/^daemon options/ { on = 1; next } on && /^$/ { exit } on && /^    / { print $1 }' <<<"$help" | sed 's/=.*//; s/\[no_\]//' | sort -u)
n=$(wc -l <<<"$lib")
if [ "$n" -ge 10 ]; then ok "thpfs --help lists $n library options"; else bad "thpfs --help lists $n library options"; fi
keys=$(sed 's/=.*//' <<<"$lib")
# the table in src/options.c, in source order
src=$(sed -n '/^} opt_defs\[\] = {/,/^};/p' src/options.c | sed -n 's/^	{ "\([a-z_]*\)", opt_[a-z_]*, "\([^"]*\)".*/\1=\2/p' | sort)
if [ "$src" = "$lib" ]; then ok "--help prints src/options.c's table"; else bad "--help differs from src/options.c: $(diff <(echo "$src") <(echo "$lib") | tr '\n' ' ')"; fi

# compare NAME LIST: every library option, with the same syntax, and no other
compare() {
	local name=$1 list=$2 extra=$3
	local missing="" unknown="" k
	for k in $lib; do
		grep -qxF -- "$k" <<<"$list" || missing="$missing $k"
	done
	while read -r k; do
		[ -n "$k" ] || continue
		grep -qxF -- "$k" <<<"$lib" && continue
		grep -qx -- "${k%%=*}" <<<"$extra" && continue
		unknown="$unknown $k"
	done <<<"$list"
	if [ -z "$missing$unknown" ]; then
		ok "$name lists the same options"
	else
		bad "$name: missing or different:${missing:- none}; not in the list:${unknown:- none}"
	fi
}
# include/thpfs.h: " *   key=SYNTAX ..." lines of the mount block
hdr=$(sed -n '/---- Mount ----/,/^int thpfs_mount(/p' include/thpfs.h | grep -oE '^ \*   [a-z_]+=[^ ]+' | awk '{ print $2 }' | sort)
compare "include/thpfs.h" "$hdr" ""
# README: the rows of the "Mount options" table
rd=$(sed -n '/^## Mount options/,/^## /p' README.md | grep '^| `' | grep -oE '`[a-z_]+=[^`]+`' | tr -d '`' | sed 's/\\|/|/g' | sort)
compare "README's Mount options table" "$rd" ""
# docs/fuse.md: the option table (daemon and libfuse options may be there too)
fm=$(sed -n '/^| option | meaning |/,/^$/p' docs/fuse.md | grep -oE '`(\[no_\])?[a-z_]+=[^`]+`' | tr -d '`' | sed 's/\\|/|/g' | sort)
compare "docs/fuse.md's option table" "$fm" "$daemon
max_threads"

# the daemon takes each of them (parsing only: a bad mount point stops it after)
bad_keys=""
for k in $keys; do
	case $k in
	size) v=200% ;; nr_inodes) v=1k ;; huge) v=always ;; split) v=native ;;
	max_ptes_none) v=0 ;; collapse) v=on ;; scan_sleep_ms) v=100 ;; mode) v=1777 ;;
	*) v=0 ;;
	esac
	out=$("$B/thpfs" -o "$k=$v" /nonexistent/thpfs-options-test 2>&1)
	grep -q "does not exist" <<<"$out" || bad_keys="$bad_keys $k=$v($out)"
done
if [ -z "$bad_keys" ]; then ok "the daemon accepts every option of the list"; else bad "the daemon refuses:$bad_keys"; fi
out=$("$B/thpfs" -o size=abc /nonexistent 2>&1)
if [ "$out" = "thpfs: bad value 'abc' for option 'size'" ]; then
	ok "a bad option is reported once: $out"
else
	bad "a bad option: '$out'"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
