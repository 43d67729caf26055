// OpenTelemetry's packages load only in a process that exports traces: they cost 60-90 ms
// of CPU in every process (each service, each test file) that merely imported the runtime.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import nodeModule from "node:module";
import { test } from "node:test";
import { promisify } from "node:util";
import { startOtlpReceiver } from "../src/testing/index.js";
import { sourceLoaderFlags } from "../src/testing/source-loader.js";

const run = promisify(execFile);
/** Node 24's in-thread module hooks (22.15+); Node 20 has only the off-thread ones. */
const hasRegisterHooks = typeof (nodeModule as { registerHooks?: unknown }).registerHooks === "function";

/**
 * Imports the runtime in a new process, starts tracing from `env` (tracingFromEnv, as every
 * process of the platform does), records one consumer span when on and flushes it; prints the
 * OpenTelemetry modules the process resolved (every import and require passes the hook).
 */
async function otelModulesOf(env: Record<string, string>): Promise<string[]> {
  const runtime = JSON.stringify(new URL("../src/index.ts", import.meta.url).href);
  const script = `
    import { registerHooks } from "node:module";
    const resolved = new Set();
    registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); resolved.add(r.url); return r; } });
    const runtime = await import(${runtime});
    const tracing = await runtime.tracingFromEnv("lazy-test", ${JSON.stringify(env)});
    await runtime.inConsumerSpan("lazy-span", [undefined], async () => undefined);
    await tracing?.stop();
    const otel = [...resolved].map((u) => /node_modules\\/(@opentelemetry\\/[^/]+)\\//.exec(u)?.[1]).filter(Boolean);
    process.stdout.write(JSON.stringify([...new Set(otel)].sort()));
  `;
  const { stdout } = await run(process.execPath, [...sourceLoaderFlags(), "--input-type=module", "-e", script], { encoding: "utf8" });
  return JSON.parse(stdout) as string[];
}

test("tracing off: a process that imports the runtime loads none of OpenTelemetry's packages; on: it loads them and exports", { skip: !hasRegisterHooks && "needs module.registerHooks (Node 22.15+)" }, async () => {
  // prom-client requires the API itself (its exemplars), whatever the tracing.
  const off = (await otelModulesOf({})).filter((pkg) => pkg !== "@opentelemetry/api");
  assert.deepEqual(off, [], "no OTEL_EXPORTER_OTLP_ENDPOINT");

  const receiver = await startOtlpReceiver();
  try {
    const loaded = await otelModulesOf({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    for (const pkg of ["@opentelemetry/core", "@opentelemetry/exporter-trace-otlp-http", "@opentelemetry/sdk-trace-base"]) assert.ok(loaded.includes(pkg), `${pkg} in ${loaded.join(", ")}`);
    assert.deepEqual(
      receiver.spans.map((s) => [s.name, s.service]),
      [["lazy-span", "lazy-test"]],
      "the span the child recorded, exported by its stop()",
    );
  } finally {
    await receiver.close();
  }
});
