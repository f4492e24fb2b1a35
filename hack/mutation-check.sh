#!/usr/bin/env bash
# Mutation check: proves that the crash and delivery tests can fail. For each
# mutation below, it copies the working tree (tracked and untracked files,
# not what .gitignore ignores) into a temporary folder, breaks the worker
# there on purpose, runs the tests that must catch it, and prints which of
# them failed and how. This tree is never modified.
#
# It fails when a mutation survives (every test it ran passed), when a
# mutation no longer applies (the code it anchors on moved: update the
# mutation), or when a mutated tree does not compile.
#
#   hack/mutation-check.sh              # every mutation
#   hack/mutation-check.sh 2 4          # mutations 2 and 4
#   MUTATION_KEEP=1 ...                 # keep the mutated trees (paths printed)
#
# Needs what the tests need (PostgreSQL: `make postgres`; the operator's
# mutations run envtest: KUBEBUILDER_ASSETS, which `make mutation-check` sets). Takes ~1-2 min per
# mutation on 2 cores (a caught crash run fails when its drain stalls).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export GOTOOLCHAIN=local

# Each mutation: a name, what it breaks, the file, a perl substitution (run
# with -0: the whole file is one string) anchored on the function it breaks,
# the tests (go test -run names) that must catch it, and their packages
# (default ./worker/; several separated by spaces).
names=() whats=() files=() subs=() tests=() pkgs=()
add() { names+=("$1"); whats+=("$2"); files+=("$3"); subs+=("$4"); tests+=("$5"); pkgs+=("${6:-./worker/}"); }

add "commit-before-ack" \
  "commit before the sink acknowledges: deliver() marks the chunk finished and commits it before calling the sink" \
  worker/worker.go \
  's/(\nfunc \(w \*Worker\) deliver\((?:(?!\nfunc ).)*?\n)(\t)(errs := w\.write\(ctx, recs\))/$1$2\/\/ MUTATION\n$2early := make([]*kgo.Record, len(chunk))\n$2for i, m := range chunk {\n$2\tearly[i] = m.rec\n$2}\n$2w.tracker.doneAll(early)\n$2w.commit(ctx, w.tracker.committable())\n$2$3/s' \
  "TestOffsetsAreCommittedOnlyAfterTheSinkAcknowledges TestCrashLoopLosesNothingAndDuplicatesNothing"

add "finish-before-copy-ack" \
  "commit past a record whose retry/DLQ copy is not acknowledged: park() counts the record finished when it hands the copy to the producer, not when the broker acknowledges it" \
  worker/parked.go \
  's/(\nfunc \(w \*Worker\) park\((?:(?!\nfunc ).)*?\n)(\t)(w\.producer\.Load\(\)\.Produce\()/$1$2w.finish(r) \/\/ MUTATION\n$2$3/s' \
  "TestCrashLoopLosesNothingAndDuplicatesNothing"

add "poison-without-dlq" \
  "count a poison pill as processed without its dead-letter copy: park() finishes a poison pill without producing it" \
  worker/parked.go \
  's/(\nfunc \(w \*Worker\) park\((?:(?!\nfunc ).)*?\n(\t)class := failure\.ClassOf\(cause\)\n)/$1$2if class == failure.ClassPoison { \/\/ MUTATION\n$2\tw.finish(r)\n$2\treturn routeDeadLetter\n$2}\n/s' \
  "TestPoisonPillGoesStraightToTheDeadLetterTopic TestCrashLoopLosesNothingAndDuplicatesNothing"

add "highest-finished" \
  "skip the contiguous-prefix rule: the tracker commits past the highest finished record, unfinished ones before it or not" \
  worker/tracker.go \
  's/(\nfunc \(pt \*partitionTrack\) advance\(\)(?:(?!\nfunc ).)*?\n)(\t)(if pt\.head == len\(pt\.inflight\) \{)/$1$2for _, tr := range pt.inflight[pt.head:] { \/\/ MUTATION\n$2\tif tr.done && tr.rec.Offset+1 > pt.commit {\n$2\t\tpt.commit, pt.epoch = tr.rec.Offset+1, tr.rec.LeaderEpoch\n$2\t}\n$2}\n$2$3/s' \
  "TestTrackerCommitsOnlyTheFinishedPrefix TestTrackerAgreesWithASimpleModel TestCrashLoopLosesNothingAndDuplicatesNothing"

add "resume-from-kafka" \
  "resume the exactly-once postgres sink from Kafka instead of the database: offsetsFromDB() leaves the assigned partitions at Kafka's commits" \
  worker/dboffsets.go \
  's/(\nfunc \(w \*Worker\) offsetsFromDB\((?:(?!\nfunc ).)*?)offsets\[topic\]\[p\] = kgo\.NewOffset\(\)\.At\(next\)/$1_ = next \/\/ MUTATION: the partition starts at the Kafka commit/s' \
  "TestExactlyOncePostgresResumesFromTheDatabaseNotFromKafka TestExactlyOncePostgresSurvivesCrashes"

add "key-lanes-off" \
  "ordering Key behaves as Unordered: planPartition gives every record a lane of its own, so records of one key are at the sink at once" \
  worker/concurrent.go \
  's/(\nfunc \(w \*Worker\) planPartition\((?:(?!\nfunc ).)*?\n\tbyKey := w\.cfg\.Processing\.Ordering == workerconfig\.OrderingKey)/$1 \&\& false \/\/ MUTATION: a lane per record/s' \
  "TestKeyOrderingKeepsEachKeyInOrderWhileKeysOverlap TestCrashLoopKeepsEachKeysOrder"

add "redrive-restart" \
  "a restarted redrive starts again from the snapshot instead of from the position it committed with its copies" \
  internal/replay/redrive.go \
  's/(\nfunc \(d \*Redrive\) position\((?:(?!\nfunc ).)*?\n\t)if len\(committed\) == 0 \{/$1if true { \/\/ MUTATION: ignore the committed position/s' \
  "TestRedriveCopiesEachSelectedRecordOnceAndEnds TestRedriveCrashesCopyEachSelectedRecordOnce" ./internal/replay/

add "redrive-past-snapshot" \
  "a redrive copies what arrived after its snapshot: records past a partition's end are copied too (and the run only ends when none arrive)" \
  internal/replay/redrive.go \
  's/(\nfunc \(d \*Redrive\) copyBatch\((?:(?!\nfunc ).)*?)if !ok \|\| r\.Offset >= p\.End \{/$1if !ok { \/\/ MUTATION: past the end is copied/s' \
  "TestRedriveCopiesEachSelectedRecordOnceAndEnds TestRedriveCrashesCopyEachSelectedRecordOnce" ./internal/replay/

add "share-accept-on-receipt" \
  "groupType Share: acknowledge each record as it is polled, before the sink has it" \
  worker/share.go \
  's/(\nfunc \(w \*Worker\) consumeShare\((?:(?!\nfunc ).)*?\n(\t\t)parts := w\.startRound\(fetches\)\n)/$1$2for _, p := range parts { \/\/ MUTATION\n$2\tfor _, r := range p.Records {\n$2\t\tr.Ack(kgo.AckAccept)\n$2\t}\n$2}\n/s' \
  "TestShareGroupKilledWorkersRecordsGoToAnotherWorker TestShareGroupCrashLoopLosesNothing"

add "share-give-back-on-open-circuit" \
  "groupType Share: give the held records back while the circuit is open (each release spends a delivery; at the limit the broker archives them, without a dead letter)" \
  worker/share.go \
  's/(\nfunc \(w \*Worker\) shareRound\((?:(?!\nfunc ).)*?)len\(parts\) == 0 \|\| stopCtx\.Err\(\) != nil \{/$1true { \/\/ MUTATION: release at once/s' \
  "TestShareGroupOpenCircuitHoldsRecordsAndRenewsTheirLocks"

add "share-no-renewal" \
  "groupType Share: never renew the locks of held records" \
  worker/share.go \
  's/(\nfunc \(w \*Worker\) renewLocks\((?:(?!\nfunc ).)*?)r\.Ack\(kgo\.AckRenew\)/$1_ = r \/\/ MUTATION: no renewal/s' \
  "TestShareGroupOpenCircuitHoldsRecordsAndRenewsTheirLocks"

add "key-skip-copy-wait" \
  "ordering Key: a key's next record goes to the sink before its failed record's retry copy is acknowledged (a refused copy then lands the record after them)" \
  worker/concurrent.go \
  's/(\nfunc \(w \*Worker\) processConcurrently\((?:(?!\nfunc ).)*?\n\t\t\t\t)if byKey \&\& len\(copies\) > 0 \{/$1if false \&\& byKey \&\& len(copies) > 0 { \/\/ MUTATION: no wait for the copies/s' \
  "TestARefusedCopyKeepsTheLaterRecordsOfItsLaneBehind"

add "partition-skip-copy-wait" \
  "ordering Partition: a partition's next records go to the sink before its failed record's retry copy is acknowledged" \
  worker/worker.go \
  's/(\nfunc \(w \*Worker\) processPartition\((?:(?!\nfunc ).)*?)if !copies\.allAcknowledged\(/$1if false \&\& !copies.allAcknowledged( \/\/ MUTATION: no wait for the copies\n\t\t\t/s' \
  "TestARefusedCopyKeepsTheLaterRecordsOfItsLaneBehind"

add "static-remove-live-slots" \
  "static members: the operator removes the members of slots below the replica count too (a restarting pod's slot), not only those a scale-down took away" \
  controllers/staticmembers.go \
  's/(\nfunc \(r \*StreamPipelineReconciler\) reconcileStaticMembers\((?:(?!\nfunc ).)*?)if !ok \|\| ordinal < keep \{/$1if !ok || ordinal < 0 { \/\/ MUTATION: every slot counts as gone/s' \
  "TestStaticMembersOfPodsThatAreGoneAreRemovedFromTheGroup" ./controllers/

add "static-remove-terminating" \
  "static members: the operator removes a member whose pod still exists (terminating, finishing its records)" \
  controllers/staticmembers.go \
  's/(\nfunc \(r \*StreamPipelineReconciler\) reconcileStaticMembers\((?:(?!\nfunc ).)*?)case apierrors\.IsNotFound\(err\):/$1case apierrors.IsNotFound(err) || err == nil: \/\/ MUTATION: a pod that exists counts as gone/s' \
  "TestStaticMembersOfPodsThatAreGoneAreRemovedFromTheGroup" ./controllers/

add "rewind-forward" \
  "a rewind also moves a partition forward when its group is before the point (the records in between are skipped)" \
  internal/replay/rewind.go \
  's/(\nfunc RewindMoves\((?:(?!\nfunc ).)*?)case p\.Start < c:/$1case p.Start != c: \/\/ MUTATION: forward too/s' \
  "TestRewindMovesOnlyGoBack TestRewindToOffsetsNeverSkipsRecords" "./internal/replay/ ./controllers/"

add "rewind-no-hold" \
  "a running rewind does not hold the pipeline's workers at zero" \
  controllers/rewindhold.go \
  's/(\nfunc \(r \*StreamPipelineReconciler\) reconcileRewindHold\((?:(?!\nfunc ).)*?)s\.heldBy = rewindHolding\(list\.Items, s\.sp\.Name\)/$1s.heldBy = "" \/\/ MUTATION: no hold/s' \
  "TestRewindHoldsTheWorkersAndMovesTheGroupBack" ./controllers/

add "rewind-no-wait" \
  "a rewind sets the offsets while the group still has members (which commit over them)" \
  controllers/replayrewind.go \
  's/(\nfunc \(r \*StreamReplayReconciler\) workersRunning\((?:(?!\nfunc ).)*?)if err != nil \|\| stopped \{/$1if err != nil || stopped || members != "" { \/\/ MUTATION: members do not count/s' \
  "TestRewindHoldsTheWorkersAndMovesTheGroupBack" ./controllers/

add "rewind-eo-from-kafka" \
  "a rewind of ExactlyOnce postgres takes Kafka's best-effort commit for the position and leaves the database's offsets where they were" \
  controllers/replayrewind.go \
  's/(\nfunc \(p rewindPosition\) database\((?:(?!\nfunc ).)*?)if pg == nil \|\|/$1if true || pg == nil || \/\/ MUTATION: the database is not the position\n\t\t/s' \
  "TestRewindOfExactlyOncePostgresMovesTheDatabasesOffsets" ./controllers/

add "nextgen-classic-protocol" \
  "groupProtocol Consumer: the worker never opts into KIP-848 and runs a classic group" \
  worker/clients.go \
  's/(\nfunc \(w \*Worker\) groupOpts\((?:(?!\nfunc ).)*?)if cfg\.Consumer\.GroupProtocol == workerconfig\.GroupProtocolConsumer \{/$1if false \&\& cfg.Consumer.GroupProtocol == workerconfig.GroupProtocolConsumer { \/\/ MUTATION: classic/s' \
  "TestConsumerGroupProtocolSharesThePartitions"

add "nextgen-members-unseen" \
  "the lag sample counts a KIP-848 group's members with DescribeGroups, which lists none" \
  internal/kafka/sample.go \
  's/(\nfunc \(c \*Cluster\) sample\((?:(?!\nfunc ).)*?)\t\tcase w\.NextGen:\n\t\t\tnextGenSet/$1\t\tcase false \&\& w.NextGen: \/\/ MUTATION: described as classic\n\t\t\tnextGenSet/s; s/\t\tcase w\.NextGen:\n\t\t\tif g, ok := nextGen/\t\tcase false \&\& w.NextGen:\n\t\t\tif g, ok := nextGen/s' \
  "TestSampleCountsGroupMembers" ./internal/kafka/

add "batch-fails-whole" \
  "the postgres sink fails a whole batch the server refused for one row (only data errors are written row by row): the good records walk the retry topics with the culprit, and are dead-lettered with its error" \
  worker/sink/postgres.go \
  's/(\nfunc \(p \*Postgres\) Write\((?:(?!\nfunc ).)*?)if !rowMayBeTheCause\(err\) \|\| len\(recs\) == 1 \{/$1if !isDataError(err) || len(recs) == 1 { \/\/ MUTATION: the batch fails as a whole/s' \
  "TestAFailingRowDoesNotTakeItsBatchThroughTheRetryTopics TestPostgresWritesTheNeighboursOfARowTheServerRefuses" "./worker/ ./worker/sink/"

add "reprocess-commit-first" \
  "a Reprocess run commits a batch's position before the sink acknowledged the batch (a run killed in the sink call skips it)" \
  worker/reprocess.go \
  's/(\nfunc \(r \*reprocessRun\) partition\((?:(?!\nfunc ).)*?\t\tpc := r\.counts\[k\]\n)/$1\t\tif err := r.commit(ctx, k, next, pc); err != nil { \/\/ MUTATION: the position first\n\t\t\treturn err\n\t\t}\n/s' \
  "TestReprocessSurvivesKills"

add "coordinator-not-awaited" \
  "a replay reads or commits its group's offsets once, failing its run while the group's coordinator is not there yet (a cluster just started)" \
  internal/replay/coordinator.go \
  's/if !coordinatorUnsettled\(err\) \|\|/if true || \/\/ MUTATION: no second ask\n\t\t\t/' \
  "TestGroupReadsWaitForTheCoordinator" "./internal/replay/"

add "no-refill" \
  "ordering Key/Unordered: a round never takes the records the client fetched while it runs (one poll per round)" \
  worker/concurrent.go \
  's/(\n\t\trefilling := )refill != nil/$1false \&\& \/* MUTATION: no refill *\/ refill != nil/' \
  "TestKeyRoundsRefillFromTheClientsBuffer"

add "refill-overtakes-busy-key" \
  "ordering Key: a refill's record of a key whose record is at the sink is handed out at once, beside it" \
  worker/lanes.go \
  's/(\n\tcase ln\.head < 0:\n\t\tln\.head, ln\.tail = m, m\n\t\t)if !ln\.busy \{/$1if true { \/\/ MUTATION: busy or not/' \
  "TestKeyRoundsRefillFromTheClientsBuffer TestLanes"

add "advance-once" \
  "ExactlyOnce postgres: the offset past parked records is stored once; when the database fails the call, the records are read and parked again (a second DLQ copy)" \
  worker/dboffsets.go \
  's/(\n\t\tcase attempt == )advanceAttempts:/$1 1 \/* MUTATION: no second ask *\/:/' \
  "TestExactlyOncePostgresDeadLettersOnceWhenStoringTheOffsetFails"

selected=("$@")
if [ ${#selected[@]} -eq 0 ]; then
  for i in "${!names[@]}"; do selected+=($((i + 1))); done
fi

# copy_tree DIR: the working tree as it is (not just what is committed).
copy_tree() {
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$1"
}

failed=0 summary=()
for n in "${selected[@]}"; do
  i=$((n - 1))
  name=${names[$i]} file=${files[$i]}
  echo "=== mutation $n/${#names[@]} $name: ${whats[$i]}"
  dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-mutation-$name-XXXXXX")
  copy_tree "$dir"
  perl -0pi -e "${subs[$i]}" "$dir/$file"
  if ! grep -q MUTATION "$dir/$file"; then
    echo "    NO LONGER APPLIES: the code it anchors on in $file changed; update this mutation in hack/mutation-check.sh"
    failed=1 summary+=("$name: no longer applies")
    rm -rf "$dir"
    continue
  fi
  diff -u "$file" "$dir/$file" | sed -n '3,$p' | grep '^[-+]' | sed 's/^/    /' || true
  run=$(echo "${tests[$i]}" | sed 's/ /$|^/g')
  log="$dir/test.log"
  set +e
  # shellcheck disable=SC2086 # pkgs may list several packages
  (cd "$dir" && go test ${pkgs[$i]} -count=1 -timeout 20m -v -run "^(${run})\$" >"$log" 2>&1)
  set -e
  if grep -q '^FAIL.*\[build failed\]\|^# github.com/sluice-dev' "$log"; then
    echo "    DOES NOT COMPILE:"; grep -A5 '^# github.com/sluice-dev' "$log" | sed 's/^/    /'
    failed=1 summary+=("$name: does not compile")
    continue
  fi
  caught=()
  for t in ${tests[$i]}; do
    if grep -q "^--- FAIL: $t " "$log"; then
      caught+=("$t")
      # The test's first failure message: its first output line that is not
      # one of its progress logs (the worker's slog lines, the harness's kills).
      why=$(awk -v t="$t" '
        $0 ~ "^=== (RUN|CONT)   " t "(/|$)" { on = 1; next }
        /^=== (RUN|CONT|PAUSE)/ || /^--- / { on = 0 }
        on && /_test\.go:[0-9]+: / && !/ level=| kill [0-9]+\/[0-9]+ at |settled in |CRASH HARNESS REPORT|drained [0-9]+ records|kills done|moved the group|left the group|exited on its own|kfake keeps members|run [0-9]+: killed/ {
          sub(/^ +/, ""); print; exit
        }' "$log" | cut -c1-240)
      echo "    caught by $t: $why"
    elif grep -q "^--- PASS: $t " "$log"; then
      echo "    passed:   $t"
    else
      echo "    did not run to the end: $t (see $log)"
    fi
  done
  if [ ${#caught[@]} -eq 0 ]; then
    echo "    SURVIVED: no test caught it (log: $log)"
    failed=1 summary+=("$name: SURVIVED")
    continue
  fi
  summary+=("$name: caught by ${caught[*]}")
  if [ -n "${MUTATION_KEEP:-}" ]; then echo "    kept: $dir"; else rm -rf "$dir"; fi
done

echo "=== summary"
printf '  %s\n' "${summary[@]}"
exit $failed
