// A CPU profile of this process between start() and stop(file): what the
// bench's own processes (the customers', the simulators') spend on, taken by
// the bench around its measured run (tip-e2e's BENCH_PROFILE) and read with
// bench/cpuprofile-summary.ts.
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";

let session: Session | undefined;

/** Starts sampling this process (a second start while one runs is ignored). */
export async function startProfile(): Promise<void> {
  if (session) return;
  session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
}

/** Stops sampling and writes the profile to `file` (nothing when none was started). */
export async function stopProfile(file: string): Promise<void> {
  const s = session;
  if (!s) return;
  session = undefined;
  const { profile } = await s.post("Profiler.stop");
  s.disconnect();
  writeFileSync(file, JSON.stringify(profile));
}

/** Where a child's profile goes beside the bench's own: a.cpuprofile -> a.<name>.cpuprofile. */
export function profileBeside(file: string, name: string): string {
  return file.endsWith(".cpuprofile") ? `${file.slice(0, -".cpuprofile".length)}.${name}.cpuprofile` : `${file}.${name}`;
}
