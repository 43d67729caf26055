// The chart's alerts and Grafana panels name only metrics the services really
// export: an alert on a metric nobody registers would never fire.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { execGo, helmBinary } from "./helm.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const chart = path.resolve(here, "../ttip");
const root = path.resolve(here, "../..");
const ARGS = ["--kube-version", "1.33.0", "--set", "publicUrl=https://tips.example.co.ke", "--set", "notification.africastalking.username=ttip"];

async function render(...set: string[]) {
  const { stdout } = await execGo(helmBinary(), ["template", "t", chart, ...ARGS, ...set.flatMap((s) => ["--set", s])]);
  return parseAllDocuments(stdout).map((d) => d.toJSON()).filter(Boolean) as { kind: string; spec: any; data?: Record<string, string> }[];
}

/** Every string literal in the services' and gateway's source that looks like a metric name. */
function registeredMetricNames(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const n of readdirSync(dir)) {
      if (n === "node_modules" || n === "test" || n.startsWith(".")) continue;
      const full = path.join(dir, n);
      if (statSync(full).isDirectory()) walk(full);
      else if (n.endsWith(".ts")) for (const m of readFileSync(full, "utf8").matchAll(/"((?:ttip|grpc)_[a-z0-9_]+)"/g)) names.add(m[1]);
    }
  };
  for (const d of ["services", "gateway"]) walk(path.join(root, d));
  return names;
}

/** Metric names in a PromQL expression, without the _bucket/_count/_sum of histograms. */
const metricsIn = (expr: string) =>
  [...expr.matchAll(/\b((?:ttip|grpc)_[a-z0-9_]+)\b/g)].map((m) => m[1].replace(/_(bucket|count|sum)$/, ""));

describe("helm chart monitoring", () => {
  test("alerts: none by default; on request, each names metrics the code exports, with thresholds from values", async () => {
    assert.equal((await render()).filter((d) => d.kind === "PrometheusRule").length, 0);
    const docs = await render("metrics.prometheusRule.enabled=true", "metrics.prometheusRule.thresholds.outboxLagSeconds=90");
    const rule = docs.find((d) => d.kind === "PrometheusRule");
    assert.ok(rule);
    const rules = rule.spec.groups.flatMap((g: { rules: { alert: string; expr: string }[] }) => g.rules);
    const alerts = rules.map((r: { alert: string }) => r.alert);
    for (const a of ["TTIPTipSuccessRateDrop", "TTIPCallbackToCreditSlow", "TTIPOutboxLag", "TTIPPayoutFailures", "TTIPNotificationProviderFailover", "TTIPErrorRate"]) {
      assert.ok(alerts.includes(a), `${a} is defined`);
    }
    assert.match(rules.find((r: { alert: string }) => r.alert === "TTIPOutboxLag").expr, / > 90$/m);
    const known = registeredMetricNames();
    for (const r of rules) for (const m of metricsIn(r.expr)) assert.ok(known.has(m), `${r.alert} uses ${m}, which no service registers`);
    // The processes label their series with their role themselves: alerts that needed a label only the
    // ServiceMonitor's relabeling adds would never fire where Prometheus finds the pods otherwise (annotations).
    for (const r of rules) assert.doesNotMatch(r.expr, /\bcomponent\s*!?=/, `${r.alert ?? (r as { record?: string }).record} selects on role, not on a scrape-time label`);
    assert.ok(rules.some((r: { expr: string }) => r.expr.includes('role="gateway"')), "the availability SLO counts the gateway's calls");
    await assert.rejects(render("metrics.prometheusRule.thresholds.tipSuccessRateMin=2"), /tipSuccessRateMin/);
  });

  test("the business dashboard ships beside the gRPC one and its panels name exported metrics", async () => {
    const docs = await render("metrics.grafanaDashboard.enabled=true");
    const cm = docs.find((d) => d.kind === "ConfigMap" && d.data?.["ttip-business.json"]);
    assert.ok(cm, "business dashboard in the ConfigMap");
    const panels = JSON.parse(cm.data!["ttip-business.json"]).panels as { title: string; targets: { expr: string }[] }[];
    const known = registeredMetricNames();
    const used = new Set(panels.flatMap((p) => p.targets.flatMap((t) => metricsIn(t.expr))));
    for (const m of used) assert.ok(known.has(m), `a panel uses ${m}, which no service registers`);
    for (const m of ["ttip_payment_tips_total", "ttip_payment_tip_amount_kes", "ttip_payment_callback_to_credit_seconds", "ttip_payment_stk_reconciliation_total",
      "ttip_payment_payouts_total", "ttip_outbox_pending", "ttip_outbox_oldest_pending_seconds", "ttip_inbox_events_total", "ttip_notification_deliveries_total",
      "ttip_auth_otp_total", "ttip_db_pool_connections"]) {
      assert.ok(used.has(m), `a panel shows ${m}`);
    }
  });
});
