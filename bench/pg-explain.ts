// The plans PostgreSQL ran for a sample of the platform's statements under a bench's load, as it ran
// them (auto_explain: analyze and buffers, generic plans included), written to a file and summed up
// per statement: how long the sampled runs took, and how much of it was spent waiting for row locks
// (LockRows above its input). Read by bench/tip-e2e.ts (BENCH_PG_EXPLAIN=file[:share]): plans under
// load show what a plan test on a quiet database does not (a subquery run again per row of a nested
// loop, a statement waiting on another's rows, a young table read whole).
import { appendFileSync, writeFileSync } from "node:fs";

/** The parts of a pg pool the sampler uses: a session of its own for the settings, and each new session's notices. */
interface SampledPool {
  connect(): Promise<{ query(sql: string): Promise<unknown>; release(): void }>;
  on(event: "connect", listener: (client: { on(event: "notice", listener: (notice: { message?: string }) => void): unknown }) => void): unknown;
}

/** Time for a configuration reload to reach the postmaster and the open sessions. */
const RELOAD_MS = 300;

/** Sets auto_explain's settings for every session (ALTER SYSTEM names them only in a session that loaded it). */
async function setAll(pool: SampledPool, settings: string[]): Promise<void> {
  const session = await pool.connect();
  try {
    await session.query("LOAD 'auto_explain'");
    for (const s of settings) await session.query(`ALTER SYSTEM SET ${s}`);
    await session.query("SELECT pg_reload_conf()");
  } finally {
    session.release();
  }
  await new Promise((r) => setTimeout(r, RELOAD_MS));
}

/**
 * Loads auto_explain into every session opened from now on, off until start(), and keeps the plans
 * sent as notices to `pool`'s sessions (set up before they open: a session opened before has no
 * auto_explain). Plans go to `file`, one per block.
 */
export async function explainSampler(pool: SampledPool, file: string, share: number) {
  if (!(share > 0 && share <= 1)) throw new Error(`BENCH_PG_EXPLAIN: a share of statements between 0 and 1, not ${share}`);
  await setAll(pool, ["session_preload_libraries = 'auto_explain'", ...["log_min_duration = -1", "log_analyze = on", "log_buffers = on", "log_level = 'notice'", `sample_rate = ${share}`].map((s) => `auto_explain.${s}`)]);
  writeFileSync(file, "");
  let on = false;
  const plans: string[] = [];
  pool.on("connect", (client) =>
    client.on("notice", ({ message = "" }) => {
      if (!on || !message.startsWith("duration:")) return;
      plans.push(message);
      appendFileSync(file, `${message}\n\n`);
    }),
  );
  return {
    start: async () => {
      await setAll(pool, ["auto_explain.log_min_duration = 0"]);
      on = true;
    },
    stop: async () => {
      on = false;
      await setAll(pool, ["auto_explain.log_min_duration = -1"]);
    },
    /** Per statement (its first words), the sampled runs: how many, their mean and longest, and the mean spent in row locks. */
    lines: (top = 12) => summary(plans, top),
  };
}

/** A plan node's line: its name, and its actual total time and loops. */
const NODE = /^\s*(?:->\s+)?(\S.*?)\s+\(cost=[^)]*\) \(actual time=[\d.]+\.\.([\d.]+) rows=\d+ loops=(\d+)\)/;

function summary(plans: string[], top: number): string[] {
  const by = new Map<string, { n: number; ms: number; max: number; locks: number }>();
  for (const plan of plans) {
    // The statement's text runs from "Query Text:" to the plan's first line (its root node, not indented).
    const text = /Query Text: ([\s\S]*?)\n\S[^\n]*\(cost=/.exec(plan)?.[1].replace(/\s+/g, " ").slice(0, 70) ?? "?";
    const ms = Number(/^duration: ([\d.]+) ms/.exec(plan)?.[1] ?? 0);
    const s = by.get(text) ?? { n: 0, ms: 0, max: 0, locks: 0 };
    s.n++;
    s.ms += ms;
    s.max = Math.max(s.max, ms);
    s.locks += lockWaitMs(plan);
    by.set(text, s);
  }
  const rows = [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, top);
  return [
    `${plans.length} plans sampled; by statement: plans, mean and longest ms, mean ms in LockRows beyond its input (waiting for rows others hold)`,
    ...rows.map(([text, s]) => `${String(s.n).padStart(5)} ${(s.ms / s.n).toFixed(2).padStart(7)} ${s.max.toFixed(1).padStart(7)} ${(s.locks / s.n).toFixed(2).padStart(7)}  ${text}`),
  ];
}

/** The time a plan's LockRows nodes took beyond their input's (the node below), summed. */
function lockWaitMs(plan: string): number {
  const lines = plan.split("\n");
  let ms = 0;
  for (let i = 0; i < lines.length; i++) {
    const node = NODE.exec(lines[i]);
    if (!node || node[1] !== "LockRows") continue;
    const input = lines.slice(i + 1).map((l) => NODE.exec(l)).find(Boolean);
    if (input) ms += Math.max(0, Number(node[2]) * Number(node[3]) - Number(input[2]) * Number(input[3]));
  }
  return ms;
}
