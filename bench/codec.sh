#!/usr/bin/env bash
# The codec figure of BENCHMARKS.md: decode + re-encode of a protocol-2
# message (BenchmarkCodecRoundTrip) against encoding/json unmarshalling the
# same envelope bytes and its decoded body into any (BenchmarkStdlibUnmarshalAny),
# run alternately A B A B in one session, same messages. Prints the per-pair
# ratio ours/stdlib (median and spread) for ns/op and allocs/op and writes
# bench/results/codec.json. Target: ratio <= 1.0.
#
#   bench/codec.sh            # 10 pairs, 1s each
#   PAIRS=3 BENCHTIME=200ms bench/codec.sh   # smoke run
set -euo pipefail

pairs=${PAIRS:-10}
benchtime=${BENCHTIME:-1s}
here=$(cd "$(dirname "$0")" && pwd)
pkg=$(cd "$here/../celerybridge" && pwd)
results="$here/results"
mkdir -p "$results"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "building test binary..." >&2
(cd "$pkg" && go test -c -o "$work/celerybridge.test" .)

run() { # $1 benchmark name; appends its output to $work/$1.txt
	(cd "$pkg" && "$work/celerybridge.test" -test.run='^$' -test.bench="^$1\$" \
		-test.benchmem -test.count=1 -test.benchtime="$benchtime") | grep '^Benchmark' | tee -a "$work/$1.txt"
}

: >"$work/pairs.txt"
for i in $(seq 1 "$pairs"); do
	echo "pair $i/$pairs" >&2
	run BenchmarkCodecRoundTrip | sed "s/^/$i A /" >>"$work/pairs.txt"
	run BenchmarkStdlibUnmarshalAny | sed "s/^/$i B /" >>"$work/pairs.txt"
done

# pairs.txt lines: <pair> <A|B> Benchmark<Name>/<message>-<procs> <iters> <ns> ns/op ... <allocs> allocs/op
awk -v pairs="$pairs" -v benchtime="$benchtime" -v out="$results/codec.json" \
	-v goversion="$(go env GOVERSION)" -v cpu="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')" '
function median(a, n,   i, j, t) {
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
	split($3, parts, "/"); msg = parts[2]; sub(/-[0-9]+$/, "", msg)
	ns = ""; allocs = ""
	for (f = 4; f <= NF; f++) { if ($f == "ns/op") ns = $(f - 1); if ($f == "allocs/op") allocs = $(f - 1) }
	msgs[msg] = 1
	nsv[msg, $2, $1] = ns; al[msg, $2, $1] = allocs
}
END {
	printf "codec round trip vs encoding/json into any, %d alternating pairs of %s, %s, %s\n\n", pairs, benchtime, goversion, cpu
	printf "%-8s %14s %14s %10s %18s %10s %10s %12s\n", "message", "ours ns/op", "stdlib ns/op", "ratio", "ratio min..max", "ours alloc", "std alloc", "alloc ratio"
	json = sprintf("{\n  \"figure\": \"codec\",\n  \"target\": \"ratio <= 1.0\",\n  \"pairs\": %d,\n  \"benchtime\": \"%s\",\n  \"go\": \"%s\",\n  \"cpu\": \"%s\",\n  \"messages\": [", pairs, benchtime, goversion, cpu)
	sep = ""
	for (m in msgs) {
		n = 0
		for (p = 1; p <= pairs; p++) {
			if (nsv[m, "A", p] == "" || nsv[m, "B", p] == "") continue
			n++
			r[n] = nsv[m, "A", p] / nsv[m, "B", p]
			a[n] = nsv[m, "A", p]; b[n] = nsv[m, "B", p]
			if (n == 1 || r[n] < lo) lo = r[n]
			if (n == 1 || r[n] > hi) hi = r[n]
			aa = al[m, "A", p]; ba = al[m, "B", p]
		}
		med = median(r, n); ma = median(a, n); mb = median(b, n)
		printf "%-8s %14.0f %14.0f %10.3f %8.3f..%-8.3f %10d %10d %12.3f\n", m, ma, mb, med, lo, hi, aa, ba, aa / ba
		json = json sprintf("%s\n    {\"message\": \"%s\", \"ours_ns_op_median\": %.0f, \"stdlib_ns_op_median\": %.0f, \"ratio_median\": %.4f, \"ratio_min\": %.4f, \"ratio_max\": %.4f, \"ours_allocs_op\": %d, \"stdlib_allocs_op\": %d, \"allocs_ratio\": %.4f, \"pass\": %s}", sep, m, ma, mb, med, lo, hi, aa, ba, aa / ba, (med <= 1.0 ? "true" : "false"))
		sep = ","
	}
	json = json "\n  ]\n}\n"
	printf "%s", json > out
	printf "\nwrote %s\n", out
}' "$work/pairs.txt"

if command -v benchstat >/dev/null 2>&1; then
	echo
	benchstat "$work/BenchmarkCodecRoundTrip.txt" "$work/BenchmarkStdlibUnmarshalAny.txt" || true
fi
