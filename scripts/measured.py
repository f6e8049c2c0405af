"""Writes the README's "Measured" table from bench/results/*.json (the JSON the bench scripts
printed), so the figures in the README are the ones a run produced."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> dict:  # type: ignore[type-arg]
    return dict(json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text()))


def table() -> str:
    zd, rl, ro = load("zero_downtime"), load("rollback_latency"), load("router_overhead")
    ca, ing, bk = load("canary"), load("ingestion"), load("backup")
    dep = bk["deploy_s"]
    im, zp = load("images"), load("zero_downtime_podman")
    c2, c16 = ro["connections_2"], ro["connections_16"]
    a, b, c = ca["a_errors_5_percent"], ca["b_200ms_slower"], ca["c_good_canary_20_rps"]
    m = zd["machine"]
    rows = [
        ("`zero_downtime`", (f"wrk load during {zd['deploys']} deploys (blue-green and rolling "
         f"alternating), {zd['failed_deploys_refused']} refused broken releases, "
         f"{zd['rollbacks']} rollbacks"),
         (f"**{int(zd['requests']):,} requests, {int(zd['failed_requests'])} failed** (non-2xx "
         f"{int(zd['non_2xx'])}, socket errors {zd['socket_errors']}, timeouts "
         f"{zd['timeouts']}); switch median {zd['switch_ms_median']:.0f} ms, max "
         f"{zd['switch_ms_max']} ms"), "0 failed of ≥ 100,000"),
        ("`rollback_latency`", ("`headway rollback` start → every answer from the target "
         "release, 10 runs"),
         (f"median **{rl['to_all_traffic_on_target_s']['median']:.2f} s**, max "
         f"{rl['to_all_traffic_on_target_s']['max']:.2f} s; "
         f"{rl['failed_requests_during_rollbacks']} failed requests"), "< 1 s median"),
        ("`router_overhead`", ("direct to one instance vs through HAProxy, 2 connections "
         "(app not saturated)"),
         (f"p99 {c2['direct']['p99_ms']:.2f} → {c2['router']['p99_ms']:.2f} ms "
         f"(**{c2['added_p99_ms']:+.2f} ms**); throughput {c2['throughput_ratio']:.2f}"),
         "added p99 < 2 ms"),
        ("`router_overhead`", "same, 16 connections (app saturated)",
         (f"throughput **{c16['throughput_ratio']:.2f}** of direct ({c16['router']['rps']:.0f} "
         f"vs {c16['direct']['rps']:.0f} req/s); p99 {c16['added_p99_ms']:+.2f} ms"),
         "≥ 0.9 of direct"),
        ("`canary` (a)", "canary answering 500 to 5% of requests, under load",
         (f"weight at 0 **{a['seconds_first_bad_to_weight_0']:.2f} s** after its first bad "
         f"answer; **{a['failed_share']:.2%}** of {a['requests']:,} requests failed"),
         "< 5 s, < 0.5%"),
        ("`canary` (b)", "canary 200 ms slower, under load",
         f"aborted **{b['seconds_first_bad_to_weight_0']:.2f} s** after its first answer",
         "seconds"),
        ("`canary` (c)", ("good canary at 20 req/s in all: the real deploy, then the judge on "
         "100 bootstrap windows of its recorded samples"),
         (f"deploy exit {c['deploy_exit']}; judge: {c['decisions']['pass']} pass, "
         f"{c['decisions']['wait']} wait, **{c['decisions']['fail']} fail**"),
         "promoted, 0 of 100 failed"),
        ("`ingestion`", "router throughput with the per-request log vs without, alternating",
         (f"ratio **{ing['throughput_ratio']:.2f}** ({', '.join(f'{x:.0f}' for x in ing['rps_with_log'])}"
         f" vs {', '.join(f'{x:.0f}' for x in ing['rps_without_log'])} req/s)"), "≥ 0.95"),
        ("`backup`", (f"`headway backup create` vs `pg_dump -Fc` by hand, PostgreSQL database "
         f"of {bk['database_bytes'] / 1e9:.2f} GB ({bk['rows']:,} rows), 2 runs each, "
         "alternating"),
         (f"ratio **{bk['backup_s']['ratio']:.2f}** (median "
         f"{statistics.median(bk['backup_s']['headway']):.1f} vs "
         f"{statistics.median(bk['backup_s']['by_hand']):.1f} s); "
         f"{bk['backup_bytes'] / 1e6:.0f} MB, same as by hand"), "≤ 1.1"),
        ("`backup`", "`headway backup restore --into` vs `pg_restore` by hand, same dump",
         (f"ratio **{bk['restore_s']['ratio']:.2f}** (median "
         f"{statistics.median(bk['restore_s']['headway']):.1f} vs "
         f"{statistics.median(bk['restore_s']['by_hand']):.1f} s)"), "≤ 1.1"),
        ("`backup`", ("deploy with a no-op release command vs without (median of 3 forced "
         "deploys each; with and without its backup of a small database)"),
         (f"{dep['no_release_command']:.2f} s without; "
         f"**{dep['added_by_release_command_s']:+.2f} s** with the command, "
         f"{dep['added_with_backup_s']:+.2f} s with command and backup (differences within "
         "run-to-run noise)"), "small"),
        ("`zero_downtime --runtime podman`", (f"the same with containers: {zp['deploys']} "
         f"deploys, {zp['failed_deploys_refused']} refused broken releases, "
         f"{zp['rollbacks']} rollbacks"),
         (f"**{int(zp['requests']):,} requests, {int(zp['failed_requests'])} failed**; switch "
         f"median {zp['switch_ms_median']:.0f} ms"), "0 failed"),
    ]
    for example, label in (("hello", "Python (FastAPI)"), ("node-hello", "Node (Express)")):
        r = im[example]
        rows.append((f"`images` {label}", ("generated image vs a naive single-stage "
                     "`FROM <same base>` + `COPY . .` + install, same run; bases are the "
                     "debootstrap stand-ins of tests/images.py"),
                     (f"adds **{r['generated_added_bytes'] / 1e6:.1f} MB** to the base vs "
                      f"{r['naive_added_bytes'] / 1e6:.1f} MB naive ({r['generated_bytes'] / 1e6:.0f}"
                      f" vs {r['naive_bytes'] / 1e6:.0f} MB in all); cold build "
                      f"{r['cold_build_s']:.1f} s; **rebuild after a code change "
                      f"{r['rebuild_after_code_change_s']:.1f} s**"), "smaller; rebuild < 5 s"))
    lines = [(f"On this project's development machine: {m['cpus']} cores, 24 GiB, Debian 12, "
             f"Python {m['python']}, {m['haproxy'].split(' - ')[0]}, {m['date']}. Load is wrk "
             "or the benches' Python load generator on loopback against the bundled example "
             "(FastAPI on uvicorn, one process per instance): load, router and app share the "
             "same 2 cores."), "",
             "| benchmark | what | result | target |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    readme = ROOT / "README.md"
    start, end = "<!-- measured: scripts/measured.py -->", "<!-- end measured -->"
    head, rest = readme.read_text().split(start)
    readme.write_text(f"{head}{start}\n{table()}\n{end}{rest.split(end)[1]}")


if __name__ == "__main__":
    main()
