// A server past its capacity, with and without the bound on calls in flight
// (runtime admission.ts), in the same run. Two servers in one child process
// (each call: a fixed amount of CPU, an await as for a Redis round trip, then as
// much again), one with no bound (the yardstick: every call admitted, so they
// all share the one event loop and end late), one with the bound; rounds
// alternate between them. `concurrency` customers each call with a deadline
// (ResolveQrCode's 3 s by default); a refused one waits the retry hint
// (grpc-retry-pushback-ms) before calling again, as the tip page's customer
// presses Pay again. Prints, per server: calls answered in time per second, p50/p99
// of those, calls past their deadline (work the server did for nobody),
// refusals and how long a refusal took, and the server's CPU per answered call.
//   node --max-semi-space-size=32 --import tsx bench/overload.ts [concurrency=192] [bound=16] [hashes per half call=10] [seconds per round=8] [rounds=2] [deadline ms=3000]
import { createHash } from "node:crypto";
import { fork } from "node:child_process";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { processCpuMs } from "./process-cpu.js";

const [concurrency, bound, hashes, seconds, rounds, deadlineMs] = [192, 16, 10, 8, 2, 3000].map((d, i) => Number(process.argv[i + 2] ?? d));

/** A fixed amount of CPU: `hashes` sha256 of 4 KiB (not a time: a starved process still does all of it). */
const block = Buffer.alloc(4096, 7);
function work(): void {
  for (let i = 0; i < hashes; i++) createHash("sha256").update(block).digest();
}

if (process.argv[8] === "serve") {
  const { admission, Metrics, startServer } = await import("@ttip/runtime");
  const { captureLogger } = await import("@ttip/runtime/testing");
  const serve = (bounded: ReturnType<typeof admission>) =>
    startServer({
      name: "overload",
      logger: captureLogger("silent").logger,
      metrics: new Metrics(),
      services: [QrService],
      validate: false,
      admission: bounded,
      routes: (router) =>
        router.service(QrService, {
          getQrCode: async (req) => {
            work();
            await new Promise<void>((resolve) => setImmediate(resolve)); // a round trip's turn of the loop
            work();
            return { qrCode: { qrCodeId: req.qrCodeId } };
          },
        }),
    });
  const bounds = [admission(0), admission(bound)];
  const servers = [await serve(bounds[0]), await serve(bounds[1])];
  process.send!(servers.map((s) => s.url));
  process.on("message", (m) => {
    if (m === "in flight") return void process.send!(bounds.map((b) => b.inFlight));
    Promise.all(servers.map((s) => s.close())).then(() => process.exit(0));
  });
} else {
  const child = fork(new URL(import.meta.url).pathname, [...[concurrency, bound, hashes, seconds, rounds, deadlineMs].map(String), "serve"], {
    execArgv: ["--max-semi-space-size=32", "--import", "tsx"],
  });
  const [unboundedUrl, boundedUrl] = await new Promise<string[]>((resolve) => child.once("message", resolve as never));
  const id = "00000000-0000-4000-8000-000000000000";
  const inFlight = () =>
    new Promise<number[]>((resolve) => {
      child.once("message", resolve as never);
      child.send("in flight");
    });

  interface Round {
    answered: number[];
    late: number;
    refused: number[];
    other: number;
    cpuMs: number;
    seconds: number;
  }

  /** One round of `concurrency` customers against `url`. */
  async function round(url: string): Promise<Round> {
    const client = createClient(QrService, createGrpcTransport({ baseUrl: url }));
    const r: Round = { answered: [], late: 0, refused: [], other: 0, cpuMs: 0, seconds };
    const cpu0 = processCpuMs(child.pid!);
    const end = performance.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < end) {
          const t0 = performance.now();
          try {
            await client.getQrCode({ qrCodeId: id }, { timeoutMs: deadlineMs });
            r.answered.push(performance.now() - t0);
          } catch (err) {
            const e = ConnectError.from(err);
            if (e.code === Code.DeadlineExceeded) r.late++;
            else if (e.code === Code.Unavailable && e.metadata.has("grpc-retry-pushback-ms")) {
              r.refused.push(performance.now() - t0);
              await new Promise((resolve) => setTimeout(resolve, Number(e.metadata.get("grpc-retry-pushback-ms"))));
            } else r.other++;
          }
        }
      }),
    );
    // Calls past their deadline still run to their end on the server (their CPU is counted): the next round starts once none is left.
    while ((await inFlight()).some((n) => n > 0)) await new Promise((resolve) => setTimeout(resolve, 100));
    r.cpuMs = processCpuMs(child.pid!) - cpu0;
    return r;
  }

  const q = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
  };
  const line = (name: string, r: Round) =>
    `${name.padEnd(20)} answered ${(r.answered.length / r.seconds).toFixed(0).padStart(4)}/s  p50 ${q(r.answered, 0.5).toFixed(0).padStart(5)} ms  p99 ${q(r.answered, 0.99).toFixed(0).padStart(5)} ms` +
    `  late ${String(r.late).padStart(5)}  refused ${String(r.refused.length).padStart(5)} (p99 ${q(r.refused, 0.99).toFixed(0)} ms)  other ${r.other}` +
    `  server CPU ${(r.cpuMs / Math.max(1, r.answered.length)).toFixed(2)} ms per answered call`;

  console.log(`overload: ${concurrency} customers, deadline ${deadlineMs} ms, ${2 * hashes} sha256 of 4 KiB per call, bound ${bound}, ${seconds} s rounds; load ${(await import("node:os")).loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  await round(boundedUrl); // warm-up (JIT, connections), not counted
  for (let i = 0; i < rounds; i++) {
    const unbounded = await round(unboundedUrl);
    const bounded = await round(boundedUrl);
    console.log(`round ${i + 1}`);
    console.log(line("  no bound", unbounded));
    console.log(line(`  bound ${bound}`, bounded));
    const ratio = (x: number, y: number) => (y ? (x / y).toFixed(2) : "n/a");
    console.log(`  bounded/unbounded: answered in time ${ratio(bounded.answered.length, unbounded.answered.length)}x, p99 ${ratio(q(bounded.answered, 0.99), q(unbounded.answered, 0.99))}x`);
  }
  child.send("stop");
  await new Promise((resolve) => child.once("exit", resolve));
}
