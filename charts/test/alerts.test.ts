// The chart's alerting rules, run by Prometheus' own rule engine (promtool, from
// Debian's prometheus package; make test-tools unpacks it): the rendered
// PrometheusRule is valid, the SLO burn-rate alerts fire on synthetic series
// when, and only when, the error budget burns as fast as each one says, and
// every alert links a runbook in charts/ttip/runbooks that covers it.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, stringify } from "yaml";
import { execGo, helmBinary } from "./helm.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const chart = path.resolve(here, "../ttip");
const RUNBOOKS = path.join(chart, "runbooks");

/** promtool from PATH or the cache make test-tools unpacks it into. */
function promtoolBinary(): string {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) if (dir && existsSync(path.join(dir, "promtool"))) return path.join(dir, "promtool");
  const cached = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "ttip-promtool/usr/bin/promtool");
  if (existsSync(cached)) return cached;
  throw new Error("promtool not found: make test-tools unpacks it from Debian's prometheus package");
}

type Rule = { alert?: string; record?: string; expr: string; labels?: Record<string, string>; annotations?: Record<string, string> };
type Group = { name: string; rules: Rule[] };

/** The rendered rule groups; `json` values go through --set-json (helm's --set leaves decimals as strings). */
async function renderGroups(json: Record<string, unknown> = {}): Promise<Group[]> {
  const args = ["template", "t", chart, "--kube-version", "1.33.0", "--set", "publicUrl=https://tips.example.co.ke", "--set", "notification.africastalking.username=ttip", "--set", "metrics.prometheusRule.enabled=true"];
  const { stdout } = await execGo(helmBinary(), [...args, ...Object.entries(json).flatMap(([k, v]) => ["--set-json", `${k}=${JSON.stringify(v)}`])]);
  const rule = parseAllDocuments(stdout).map((d) => d.toJSON()).find((d) => d?.kind === "PrometheusRule");
  return rule.spec.groups;
}

/** A counter growing by `perMinute` for `minutes`, then by `after` per minute (promtool's expanding notation). */
const counter = (perMinute: number, minutes: number, after?: { perMinute: number; minutes: number }) =>
  `0+${perMinute}x${minutes}` + (after ? ` ${perMinute * minutes + after.perMinute}+${after.perMinute}x${after.minutes - 1}` : "");

// No limit of its own: the runner's per-test one (six minutes) applies. About 7-10 s of CPU (promtool's
// burn tests most of it), so on two cores shared at load 40-65 the file takes minutes; a 120 s limit on
// the whole suite failed it there with nothing wrong.
describe("the chart's alerts under Prometheus' rule engine", () => {
  let dir: string;
  let groups: Group[];
  const promtool = (...args: string[]) => execGo(promtoolBinary(), args, { cwd: dir }).catch((err: { stdout?: string; stderr?: string }) => {
    throw new Error(`promtool ${args.join(" ")}:\n${err.stdout ?? ""}${err.stderr ?? ""}`);
  });

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "ttip-alerts-"));
    groups = await renderGroups();
    writeFileSync(path.join(dir, "rules.yaml"), stringify({ groups }));
    // The same rules without annotations for the unit tests: their texts hold $value, which is not what is tested.
    const bare = groups.map((g) => ({ ...g, rules: g.rules.map(({ annotations: _, ...r }) => r) }));
    writeFileSync(path.join(dir, "bare.yaml"), stringify({ groups: bare }));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("promtool accepts every rule: PromQL, templates, recording rule names", async () => {
    const { stdout } = await promtool("check", "rules", "rules.yaml");
    assert.match(stdout, /SUCCESS: \d+ rules found/);
  });

  test("burn-rate alerts: fast burns page, slow burns open a ticket, a burn that stopped stops paging", async () => {
    // Availability: 0.999 over the gateway's calls (a budget of 0.1%).
    const ok = 'grpc_server_handled_total{role="gateway",grpc_service="ttip.qr.v1.QrService",grpc_code="OK"}';
    const bad = 'grpc_server_handled_total{role="gateway",grpc_service="ttip.qr.v1.QrService",grpc_code="Unavailable"}';
    const service = 'grpc_server_handled_total{role="qr",grpc_service="ttip.qr.v1.QrService",grpc_code="Unavailable"}';
    // Tip completion: 0.99 of ended tips reach an outcome (expired ones did not).
    const tips = (status: string) => `ttip_payment_tips_total{status="${status}",method="mpesa"}`;
    // Callback to credit: 0.99 within 30 s.
    const credit = (le: string) => `ttip_payment_callback_to_credit_seconds_bucket{le="${le}",method="mpesa"}`;
    const page = (slo: string) => [{ exp_labels: { severity: "page", slo } }];
    const ticket = (slo: string) => [{ exp_labels: { severity: "ticket", slo } }];
    const tests = [
      {
        // 2% of calls fail for 80 minutes: 20x the budget's rate.
        interval: "1m",
        input_series: [
          { series: ok, values: counter(980, 80) },
          { series: bad, values: counter(20, 80) },
        ],
        alert_rule_test: [{ eval_time: "70m", alertname: "TTIPAvailabilityBudgetBurnFast", exp_alerts: page("availability") }],
      },
      {
        // 0.5% for 3 hours: 5x the budget's rate, a ticket (3x over 1d and 2h) but no page (6x and 14.4x not
        // reached). The service's own count of failures (role="qr") is not the gateway's: it must not add.
        interval: "1m",
        input_series: [
          { series: ok, values: counter(995, 180) },
          { series: bad, values: counter(5, 180) },
          { series: service, values: counter(500, 180) },
        ],
        alert_rule_test: [
          { eval_time: "170m", alertname: "TTIPAvailabilityBudgetBurnFast", exp_alerts: [] },
          { eval_time: "170m", alertname: "TTIPAvailabilityBudgetBurnSlow", exp_alerts: ticket("availability") },
        ],
      },
      {
        // 2% for an hour, then none for 40 minutes: the long windows still burn, the short ones (5m, 30m)
        // do not; the page ends.
        interval: "1m",
        input_series: [
          { series: ok, values: counter(980, 60, { perMinute: 1000, minutes: 40 }) },
          { series: bad, values: counter(20, 60, { perMinute: 0, minutes: 40 }) },
        ],
        alert_rule_test: [
          { eval_time: "59m", alertname: "TTIPAvailabilityBudgetBurnFast", exp_alerts: page("availability") },
          { eval_time: "95m", alertname: "TTIPAvailabilityBudgetBurnFast", exp_alerts: [] },
        ],
      },
      {
        // 20% of tips expire unsettled for 70 minutes; failures the customer chose are outcomes, not errors.
        interval: "1m",
        input_series: [
          { series: tips("succeeded"), values: counter(6, 70) },
          { series: tips("failed"), values: counter(2, 70) },
          { series: tips("expired"), values: counter(2, 70) },
        ],
        alert_rule_test: [{ eval_time: "65m", alertname: "TTIPTipCompletionBudgetBurnFast", exp_alerts: page("tip_completion") }],
      },
      {
        // Many customers cancel (40% of tips fail), none expire: no burn.
        interval: "1m",
        input_series: [
          { series: tips("succeeded"), values: counter(6, 70) },
          { series: tips("failed"), values: counter(4, 70) },
          { series: tips("expired"), values: "0x70" },
        ],
        alert_rule_test: [{ eval_time: "65m", alertname: "TTIPTipCompletionBudgetBurnFast", exp_alerts: [] }],
      },
      {
        // Every M-Pesa tip settles; most card tips are left at the card form and expire (abandoned
        // checkouts): no burn, no success-rate page. Before, both paged.
        interval: "1m",
        input_series: [
          { series: tips("succeeded"), values: counter(10, 70) },
          { series: 'ttip_payment_tips_total{status="succeeded",method="card"}', values: counter(1, 70) },
          { series: 'ttip_payment_tips_total{status="expired",method="card"}', values: counter(8, 70) },
        ],
        alert_rule_test: [
          { eval_time: "65m", alertname: "TTIPTipCompletionBudgetBurnFast", exp_alerts: [] },
          { eval_time: "65m", alertname: "TTIPTipSuccessRateDrop", exp_alerts: [] },
        ],
      },
      {
        // The wallet refuses every credit for an hour: no credit lands, so the latency histogram stays flat
        // (its percentile is no number), while the oldest paid tip waits ever longer. Before, nothing paged.
        interval: "1m",
        input_series: [
          { series: credit("30"), values: "100x70" },
          { series: credit("+Inf"), values: "100x70" },
          { series: "ttip_payment_oldest_uncredited_seconds{method=\"mpesa\"}", values: "0+60x70" },
        ],
        alert_rule_test: [{ eval_time: "65m", alertname: "TTIPCallbackToCreditSlow", exp_alerts: [{ exp_labels: { severity: "page" } }] }],
      },
      {
        // 25% of credits take longer than 30 s for 70 minutes.
        interval: "1m",
        input_series: [
          { series: credit("10"), values: counter(70, 70) },
          { series: credit("30"), values: counter(75, 70) },
          { series: credit("+Inf"), values: counter(100, 70) },
          { series: 'ttip_payment_callback_to_credit_seconds_count{method="mpesa"}', values: counter(100, 70) },
        ],
        alert_rule_test: [{ eval_time: "65m", alertname: "TTIPCallbackToCreditBudgetBurnFast", exp_alerts: page("callback_to_credit") }],
      },
      {
        // All within 30 s (a quarter past 10 s): no burn.
        interval: "1m",
        input_series: [
          { series: credit("10"), values: counter(75, 70) },
          { series: credit("30"), values: counter(100, 70) },
          { series: credit("+Inf"), values: counter(100, 70) },
          { series: 'ttip_payment_callback_to_credit_seconds_count{method="mpesa"}', values: counter(100, 70) },
        ],
        alert_rule_test: [{ eval_time: "65m", alertname: "TTIPCallbackToCreditBudgetBurnFast", exp_alerts: [] }],
      },
    ];
    writeFileSync(path.join(dir, "burn.test.yaml"), stringify({ rule_files: ["bare.yaml"], evaluation_interval: "1m", tests }));
    const { stdout } = await promtool("test", "rules", "burn.test.yaml");
    assert.match(stdout, /SUCCESS/);
  });

  test("the objective sets the thresholds: a tighter one pages on a burn the default tolerates", async () => {
    const strict = await renderGroups({ "metrics.prometheusRule.slo.availability.objective": 0.9999 });
    const fast = strict.flatMap((g) => g.rules).find((r) => r.alert === "TTIPAvailabilityBudgetBurnFast")!;
    assert.match(fast.expr, /rate1h\{slo="availability"\} > 0\.00144/);
    await assert.rejects(renderGroups({ "metrics.prometheusRule.slo.availability.objective": 0.9 }), /objective/, "a 10% budget can never burn 14.4x");
    await assert.rejects(renderGroups({ "metrics.prometheusRule.slo.callbackToCredit.thresholdSeconds": 20 }), /thresholdSeconds/, "only a histogram bound");
  });

  test("every alert links its runbook, and the runbook covers it: what it means, its impact, how to diagnose and mitigate", () => {
    const alerts = groups.flatMap((g) => g.rules).filter((r) => r.alert);
    assert.ok(alerts.length >= 15, `${alerts.length} alerts`);
    for (const a of alerts) {
      const url = a.annotations?.runbook_url ?? "";
      assert.match(url, /^https:\/\/github\.com\/ttip-platform\/ttip\/blob\/main\/charts\/ttip\/runbooks\/[A-Za-z]+\.md$/, `${a.alert}: ${url}`);
      const file = path.join(RUNBOOKS, path.basename(url));
      assert.ok(existsSync(file), `${a.alert}: ${path.basename(url)} exists`);
      const text = readFileSync(file, "utf8");
      assert.match(text, new RegExp(`^#+ .*\\b${a.alert}\\b`, "m"), `${path.basename(url)} has a heading for ${a.alert}`);
      for (const section of ["Meaning", "Impact", "Diagnose", "Mitigate"]) assert.match(text, new RegExp(`^#+ ${section}`, "m"), `${path.basename(url)}: ${section}`);
    }
  });
});
