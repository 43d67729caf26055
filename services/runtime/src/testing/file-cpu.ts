// CPU seconds per test file, for run-tests.ts's closing lines: on two shared cores CPU, not
// wall, says what a file costs the suite. Loaded with `--import` into each test file's process
// (run-tests.ts passes it); at exit the process writes its own CPU and that of the processes it
// started and waited for (a platform, chromium) to TTIP_TEST_CPU_DIR, one JSON file per process.
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

export interface FileCpu {
  /** The test file (absolute path) this process ran. */
  file: string;
  /** This process's user + system CPU, ms. */
  ownMs: number;
  /** User + system CPU of the child processes it waited for (their own children's included), ms. */
  childrenMs: number;
}

/** The kernel's clock ticks per second (Linux's USER_HZ, 100 everywhere Node runs). */
const TICKS_PER_SECOND = 100;

/** cutime + cstime from /proc/self/stat (fields 16 and 17), ms; 0 where there is no /proc. */
function waitedChildrenMs(): number {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    // Fields after the command name, which may hold spaces and ends at the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[13]) + Number(fields[14])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

function report(): void {
  const dir = process.env.TTIP_TEST_CPU_DIR;
  const file = process.argv[1];
  // A process a test started with this one's flags (a platform from source) is its parent's children's CPU.
  // A group's entry (test-lanes.ts' TOGETHER_ENTRIES) is a test file's process too.
  if (!dir || !(file?.endsWith(".test.ts") || file?.endsWith(".group.ts"))) return;
  const usage = process.resourceUsage();
  const cpu: FileCpu = { file, ownMs: (usage.userCPUTime + usage.systemCPUTime) / 1000, childrenMs: waitedChildrenMs() };
  try {
    writeFileSync(path.join(dir, `${process.pid}.json`), JSON.stringify(cpu));
  } catch {
    // The runner is gone or its folder removed: nobody reads the figure.
  }
}

process.once("exit", report);
