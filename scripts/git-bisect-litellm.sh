#!/usr/bin/env bash
# git bisect run helper: test the LiteLLM commit git bisect checked out (the current folder) with the harness.
#
#   cd ~/src/litellm                                   # a LiteLLM checkout
#   git bisect start <bad-commit> <good-commit>        # bad: has the bug, good: has not
#   git bisect run /path/to/harness/scripts/git-bisect-litellm.sh [--find-fix] [SCENARIO] [-- HARNESS-RUN-OPTIONS]
#
# It runs `harness run SCENARIO --litellm "$PWD" --bisect` from the harness folder (the tree is built into its
# own environment, keyed by commit + uncommitted changes) and exits as git expects:
#   0    good: the bug is absent (NOT REPRODUCED) — whatever the scenario expects
#   1    bad: the bug is present (REPRODUCED)
#   125  skip: nothing decided (the tree does not install, INCONCLUSIVE, the stack broke, bad input)
#   130  interrupted: git bisect run stops
# --find-fix: look for the commit that FIXED the bug instead; start git bisect with its own terms:
#   git bisect start --term-old=broken --term-new=fixed && git bisect fixed <commit> && git bisect broken <commit>
#   git bisect run /path/to/harness/scripts/git-bisect-litellm.sh --find-fix
# (0 and 1 are swapped: a commit with the bug is "old"/broken, one without it "new"/fixed.)
#
# SCENARIO: a scenario file, relative to the harness folder (default: $HARNESS_SCENARIO or
# scenarios/phantom-budget.yaml). Environment: HARNESS_MIN_PHANTOMS / HARNESS_MIN_LEAKED (REPRODUCED counts as
# bad only with that many phantom rejections or that many leaked $; default 0 = the verdict as is),
# HARNESS_BIN (default: <harness>/.venv/bin/harness). More: docs/git-bisect.md.
set -u

tree=$PWD
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
harness=${HARNESS_BIN:-$here/.venv/bin/harness}
scenario=${HARNESS_SCENARIO:-scenarios/phantom-budget.yaml}
find_fix=0
extra=()
while [ $# -gt 0 ]; do
    case $1 in
        --find-fix) find_fix=1 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 125 ;;
        -*) echo "git-bisect-litellm: unknown option $1 (see --help)" >&2; exit 125 ;;
        *) scenario=$1 ;;
    esac
    shift
done

if [ ! -x "$harness" ]; then
    echo "git-bisect-litellm: $harness is missing — run \`make setup\` in $here (or set HARNESS_BIN)" >&2
    exit 125
fi

commit=$(git -C "$tree" rev-parse --short HEAD 2>/dev/null || echo "?")
echo "git-bisect-litellm: testing $tree at $commit with $scenario" >&2
(cd "$here" && "$harness" run "$scenario" --litellm "$tree" --bisect \
    --min-phantoms "${HARNESS_MIN_PHANTOMS:-0}" --min-leaked "${HARNESS_MIN_LEAKED:-0}" ${extra[@]+"${extra[@]}"})
rc=$?

case $rc in
    0|1) [ "$find_fix" = 1 ] && rc=$((1 - rc)) ;;
    125|130) ;;
    *) rc=125 ;;          # anything else must not read as "bad"
esac
case $rc in
    0) word=$([ "$find_fix" = 1 ] && echo "broken (the bug is present)" || echo "good (the bug is absent)") ;;
    1) word=$([ "$find_fix" = 1 ] && echo "fixed (the bug is absent)" || echo "bad (the bug is present)") ;;
    125) word="skip" ;;
    *) word="abort" ;;
esac
echo "git-bisect-litellm: $commit → exit $rc: $word" >&2
exit "$rc"
