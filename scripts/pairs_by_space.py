#!/usr/bin/env python3
"""Preference pairs per settled match, by Space, from an arena database (SQLite file
or PostgreSQL URL via psql is not supported: pass the SQLite file of a data directory).

For each Space it prints: settled matches, the share that yielded at least one pair,
pairs per match, and the pairs' mean judge agreement, twice: with every pair, and
with only the pairs the ranking made before graded outcomes (issue 21) could make.
Before grades, two answers that both broke a hard rule tied at zero and never paired;
every other pair's margin is unchanged, so "before" is exactly the pairs of this same
run whose two answers did not both break a hard rule. Whether an answer broke one is
read from the rules judge's rationale ("hard rule NAME failed").

Usage: scripts/pairs_by_space.py DATA_DIR/rlfc.sqlite
"""
import json
import sqlite3
import sys


def main(path):
    db = sqlite3.connect(path)
    failed = {
        rid
        for (rid,) in db.execute(
            "SELECT response_id FROM judge_scores WHERE judge = 'rules' AND rationale LIKE '%hard rule % failed%'"
        )
    }
    out = {}
    spaces = db.execute("SELECT id, slug FROM spaces ORDER BY slug").fetchall()
    for space_id, slug in spaces:
        matches = [
            m
            for (m,) in db.execute(
                "SELECT m.id FROM matches m WHERE m.space_id = ? AND m.status = 'settled'",
                (space_id,),
            )
        ]
        if not matches:
            continue
        pairs = db.execute(
            "SELECT match_id, chosen_response_id, rejected_response_id, judge_agreement "
            "FROM preference_pairs WHERE space_id = ?",
            (space_id,),
        ).fetchall()
        both = [p for p in pairs if p[1] in failed and p[2] in failed]
        before = [p for p in pairs if not (p[1] in failed and p[2] in failed)]

        def figures(ps):
            with_pair = {p[0] for p in ps}
            agreement = sum(p[3] for p in ps) / len(ps) if ps else None
            return {
                "matches_with_a_pair": len(with_pair),
                "share_with_a_pair": round(len(with_pair) / len(matches), 3),
                "pairs_per_match": round(len(ps) / len(matches), 2),
                "mean_judge_agreement": None if agreement is None else round(agreement, 3),
            }

        out[slug] = {
            "settled_matches": len(matches),
            "before_grades": figures(before),
            "with_grades": figures(pairs),
            "pairs_between_two_failed_answers": len(both),
        }
    per_space = list(out.values())
    settled = sum(v["settled_matches"] for v in per_space)
    if settled:
        out["all"] = {"settled_matches": settled}
        for key in ("before_grades", "with_grades"):
            n = sum(v[key]["matches_with_a_pair"] for v in per_space)
            out["all"][key] = {
                "matches_with_a_pair": n,
                "share_with_a_pair": round(n / settled, 3),
            }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
