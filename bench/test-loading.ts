// CPU per test file process: Node 24's own type stripping with the repository's hooks
// (source-hooks.ts, what `make test` runs the suite with) against tsx (the yardstick), the
// same files alternated in the same rounds (the first round warms both loaders' caches
// and is not counted). The default files need no test servers and test little, so
// most of what they cost is loading their modules; the figure is the whole process's CPU
// (main thread, loader and V8 threads), read by the process itself as it exits. Run it
// as `make test` runs the suite (the hooks' compile cache then reaches the hooks' runs as
// it reaches the test files; the tsx runs go without, as make test's did):
//   node24 --experimental-transform-types --import ./services/runtime/src/testing/source-hooks.ts \
//     bench/test-loading.ts [rounds=3] [test file ...]
import { spawn } from "node:child_process";
import { loadavg } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SOURCE_HOOKS_FLAGS } from "@ttip/runtime/testing";

const root = fileURLToPath(new URL("../", import.meta.url));
const rounds = Number(process.argv[2] ?? 3);
const DEFAULT_FILES = [
  "services/runtime/test/clock.test.ts",
  "services/runtime/test/input.test.ts",
  "services/wallet/test/fees.test.ts",
  "services/qr/test/units.test.ts",
  "gateway/test/policy.test.ts",
  "apps/web/test/forms.test.ts",
  "proto/tools/access-breaking.test.ts",
];
const files = process.argv.length > 3 ? process.argv.slice(3) : DEFAULT_FILES;
const LOADERS: Record<string, readonly string[]> = { "tsx (yardstick)": ["--import", "tsx"], "node 24 + source hooks": SOURCE_HOOKS_FLAGS };
const { NODE_COMPILE_CACHE, ...withoutCompileCache } = process.env;
const ENV: Record<string, NodeJS.ProcessEnv> = { "tsx (yardstick)": withoutCompileCache, "node 24 + source hooks": process.env };
if (!NODE_COMPILE_CACHE) console.log("no NODE_COMPILE_CACHE here: each hooks run strips source-hooks.ts again (run this with the hooks)");
/** Prints the process's own CPU (all its threads) as it exits, on a line of its own. */
const CPU_AT_EXIT = `data:text/javascript,process.on("exit",()=>{const u=process.cpuUsage();process.stderr.write("\\n@cpu "+(u.user+u.system)+"\\n")})`;

/** CPU ms of one run of `file` with `flags`; fails when the file's tests do. */
function cpuMs(flags: readonly string[], env: NodeJS.ProcessEnv, file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...flags, "--import", CPU_AT_EXIT, file], { cwd: root, env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000))); // the tail holds the figure
    child.on("exit", (code) => {
      const cpu = /@cpu (\d+)/.exec(err);
      if (code === 0 && cpu) resolve(Number(cpu[1]) / 1000);
      else reject(new Error(`${file} exited ${code}:\n${err}`));
    });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const per = new Map<string, number[]>(); // `${loader}\t${file}` -> ms per counted round
for (let r = 0; r <= rounds; r++) {
  for (const file of files) {
    // Alternate which loader goes first, so neither always finds the machine warmer.
    const order = r % 2 ? Object.entries(LOADERS).reverse() : Object.entries(LOADERS);
    for (const [name, flags] of order) {
      const ms = await cpuMs(flags, ENV[name], file);
      if (r > 0) per.set(`${name}\t${file}`, [...(per.get(`${name}\t${file}`) ?? []), ms]);
    }
  }
}

const [yardstick, hooks] = Object.keys(LOADERS);
console.log(`CPU ms per test file process, median of ${rounds} rounds (load average ${loadavg().map((l) => l.toFixed(1)).join(" ")})`);
console.log(`${"file".padEnd(44)} ${yardstick.padStart(16)} ${hooks.padStart(24)}  ratio`);
let sumTsx = 0;
let sumHooks = 0;
for (const file of files) {
  const a = median(per.get(`${yardstick}\t${file}`)!);
  const b = median(per.get(`${hooks}\t${file}`)!);
  sumTsx += a;
  sumHooks += b;
  console.log(`${path.relative(root, path.resolve(root, file)).padEnd(44)} ${a.toFixed(0).padStart(16)} ${b.toFixed(0).padStart(24)}  ${(b / a).toFixed(2)}`);
}
console.log(`${"all".padEnd(44)} ${sumTsx.toFixed(0).padStart(16)} ${sumHooks.toFixed(0).padStart(24)}  ${(sumHooks / sumTsx).toFixed(2)}`);

