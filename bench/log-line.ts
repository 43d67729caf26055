// CPU per log line of the runtime's logger (log.ts: pino with every field and
// message scrubbed of phones, cards, codes and credentials), as the gateway's
// access log writes one per call at info, against pino with the same fields
// and no scrubbing (the yardstick), rounds alternated in one process. Lines go
// to /dev/null through a synchronous destination, as stdout's is.
// BENCH_OTHER_LOG=path/to/other/services/runtime/src/log.ts adds another
// tree's logger to the same rounds (an A/B on a busy machine).
//   node --import tsx bench/log-line.ts [ms per logger and round=300] [rounds=15]
import { openSync } from "node:fs";
import { destination as pinoDestination, pino, type Logger } from "pino";
import { createLogger, type LogOptions } from "@ttip/runtime";
import { cpuMicrosPerCall } from "./process-cpu.js";

const msPerRound = Number(process.argv[2] ?? 300);
const rounds = Number(process.argv[3] ?? 15);
const destination = () => pinoDestination({ dest: openSync("/dev/null", "w"), sync: true });

// The gateway's access line (interceptors.ts), and a failure's, whose text holds digits.
const access = () => ({ rpc: "ttip.payment.v1.PaymentService/CreateTip", code: "OK", ms: 12.3, requestId: "9b2f6c1e-2d3a-4e5f-8a9b-0c1d2e3f4a5b", caller: "anonymous" });
const failure = () => ({ rpc: "ttip.payment.v1.PaymentService/CreateTip", requestId: "9b2f6c1e-2d3a-4e5f-8a9b-0c1d2e3f4a5b", code: "FailedPrecondition", err: "tip 7f3e2d1c is not pending (status 3)" });

const loggers: Record<string, Logger> = {
  "pino (yardstick)": pino({ timestamp: pino.stdTimeFunctions.isoTime, messageKey: "msg" }, destination()),
  "runtime logger": createLogger({ destination: destination() }),
};
if (process.env.BENCH_OTHER_LOG) {
  const other = (await import(process.env.BENCH_OTHER_LOG)) as { createLogger(o: LogOptions): Logger };
  loggers["other tree's logger"] = other.createLogger({ destination: destination() });
}

const per = new Map<string, number[]>();
const line = (logger: Logger) => () => {
  logger.info(access(), "call");
  logger.debug(failure(), "call refused"); // below the level: what a refusal costs at info
  logger.info(failure(), "call failed");
};
for (const logger of Object.values(loggers)) cpuMicrosPerCall(line(logger), msPerRound); // warm up
for (let r = 0; r < rounds; r++) {
  for (const [name, logger] of Object.entries(loggers)) per.set(name, [...(per.get(name) ?? []), cpuMicrosPerCall(line(logger), msPerRound) / 2]);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const yard = median(per.get("pino (yardstick)")!);
console.log(`node ${process.version}; ${rounds} rounds of ${msPerRound} ms; median CPU µs per line written (an access line and a failure's, with a debug line skipped)`);
for (const [name, xs] of per) console.log(`  ${name.padEnd(22)} ${median(xs).toFixed(2).padStart(6)} µs  ratio to pino ${(median(xs) / yard).toFixed(2)}`);
const other = per.get("other tree's logger");
if (other) console.log(`  ratio runtime logger / the other tree's: ${(median(per.get("runtime logger")!) / median(other)).toFixed(2)}`);
