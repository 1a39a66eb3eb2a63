#!/bin/bash
# A/B of two quire builds: the same redis-benchmark invocation against
# each, alternating, 5 runs. BASE and NEW are quire binaries (e.g. a
# worktree of the commit before a change, built with its own target dir).
BASE=${BASE:?set BASE to the baseline quire binary}
NEW=${NEW:-$(dirname "$0")/../target/release/quire}
TEST=${TEST:-set}
P=${P:-16}
N=${N:-1000000}
start() { d=$(mktemp -d); $1 server --port $2 --bind 127.0.0.1 --save "" --appendonly no --appendfsync everysec --dir $d >/dev/null 2>&1 & echo $!; }
pb=$(start $BASE 7101); pn=$(start $NEW 7102)
sleep 1
for i in 1 2 3 4 5; do
  for pair in "base 7101" "new 7102"; do
    set -- $pair
    r=$(redis-benchmark -p $2 -t $TEST -P $P -n $N -c 50 -q 2>/dev/null | grep -oE '[0-9.]+ requests per second' | head -1)
    echo "$1 $r"
  done
done
kill $pb $pn
