// What node's --enable-source-maps costs a process of the image (its production bundle, ttip.mjs
// and its 3 MB map): the first Error stack formatted parses the whole map and keeps it for the
// process's life. Every service formats one while it starts (nats.js's connection), so each pod
// paid it. Measured on a role that stops at its first error (qr, its NATS refusing, the error's
// stack logged as a start failure does): the process's CPU, its heap and its peak RSS at exit,
// with and without the flag, alternated in rounds. Without it a stack names ttip.mjs's lines
// (the map is in the image beside it: NODE_OPTIONS=--enable-source-maps maps them when wanted).
//   node --import tsx bench/image-source-maps.ts [rounds=4]
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { imageBuild, imageRuntime } from "./image-form.js";

const rounds = Number(process.argv[2] ?? 4);
const { productionEntry, dir } = await imageBuild();
// Printed by the role's process as it exits: its CPU, heap in use and peak RSS.
const probe = path.join(dir, "exit-probe.mjs");
writeFileSync(probe, `process.on("exit", () => { const c = process.cpuUsage(); process.stderr.write("\\nEXIT " + JSON.stringify({ cpuMs: (c.user + c.system) / 1000, heapMiB: process.memoryUsage().heapUsed / 1048576, rssMiB: process.resourceUsage().maxRSS / 1024 }) + "\\n"); });\n`);
const closed = "127.0.0.1:9";
const env: NodeJS.ProcessEnv = {
  PATH: process.env.PATH ?? "", NODE_ENV: imageRuntime().env.NODE_ENV as NodeJS.ProcessEnv["NODE_ENV"], DATABASE_URL: `postgres://u:p@${closed}/x`, NATS_URL: `nats://${closed}`, REDIS_URL: `redis://${closed}`,
  AUTH_URL: `http://${closed}`, INTERNAL_SIGNING_KEY: "a".repeat(43), QR_SIGNING_KEY: "b".repeat(43),
};

/** One start of the qr role with these flags: what its process had spent and held at exit, and its error's first frame. */
function run(flags: string[]): Promise<{ cpuMs: number; heapMiB: number; rssMiB: number; frame: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...flags, "--import", probe, productionEntry, "qr"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    for (const s of [child.stdout, child.stderr]) s.on("data", (d: Buffer) => (out += d.toString()));
    child.once("exit", () => {
      const exit = /^EXIT (.*)$/m.exec(out);
      if (!exit) return reject(new Error(`no figures from the role:\n${out}`));
      resolve({ ...JSON.parse(exit[1]), frame: /at _NatsError\.errorForCode \(([^)]*)\)/.exec(out)?.[1]?.replace(/^.*\//, "") ?? "?" });
    });
  });
}

const base = imageRuntime().nodeFlags.filter((f) => f !== "--enable-source-maps");
const ways = new Map([["--enable-source-maps", [...base, "--enable-source-maps"]], ["without", base]]);
const figures = new Map<string, { cpuMs: number; heapMiB: number; rssMiB: number }[]>();
for (let round = 1; round <= rounds; round++) {
  for (const [name, flags] of round % 2 ? ways : new Map([...ways].reverse())) {
    const r = await run(flags);
    figures.set(name, [...(figures.get(name) ?? []), r]);
    console.log(`round ${round}  ${name.padEnd(21)} CPU ${r.cpuMs.toFixed(0).padStart(5)} ms  heap ${r.heapMiB.toFixed(1).padStart(6)} MiB  peak RSS ${r.rssMiB.toFixed(0).padStart(4)} MiB  stack frame: ${r.frame}`);
  }
}
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const [withMaps, without] = [...figures.values()];
const m = (rs: typeof withMaps, k: "cpuMs" | "heapMiB" | "rssMiB") => median(rs.map((r) => r[k]));
console.log(`medians of ${rounds} rounds, with the flag vs without: CPU ${m(withMaps, "cpuMs").toFixed(0)} vs ${m(without, "cpuMs").toFixed(0)} ms, ` +
  `heap ${m(withMaps, "heapMiB").toFixed(1)} vs ${m(without, "heapMiB").toFixed(1)} MiB, peak RSS ${m(withMaps, "rssMiB").toFixed(0)} vs ${m(without, "rssMiB").toFixed(0)} MiB; ` +
  `per round, without / with: CPU ${without.map((r, i) => (r.cpuMs / withMaps[i].cpuMs).toFixed(2)).join(", ")}`);
