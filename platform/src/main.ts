// One entry for every process of the platform, run from source (tsx):
//   main.ts <auth|payment|qr|wallet|notification|analytics|venue>  one service (cluster)
//   main.ts gateway                                          the public gateway (cluster)
//   main.ts migrate                                          every schema's migrations, then exit (the chart's hook Job)
//   main.ts setup-token                                      a one-time token for the first admin (while none exists), then exit
//   main.ts simulators                                       the Daraja simulator (development clusters only)
//   main.ts embedded                                         everything in this process
//   main.ts replicas                                         REPLICAS copies of everything, one per core (replicas.ts)
// The image runs the compiled production.ts instead (cluster roles only).
import { CLUSTER_ROLES, exitOnStartError, runClusterRole } from "./cluster.js";

const role = process.argv[2] ?? "";
const roles = [...CLUSTER_ROLES, "simulators", "embedded", "replicas"];

async function main() {
  if (!roles.includes(role)) {
    console.error(`usage: main.ts <${roles.join("|")}>`);
    process.exit(2);
  }
  // Loaded only for their roles, so a cluster role never loads PGlite or a simulator.
  if (role === "embedded") return (await import("./embedded.js")).runEmbedded();
  if (role === "replicas") return (await import("./replicas.js")).runReplicas();
  if (role === "simulators") return (await import("./simulators.js")).runSimulators();
  return runClusterRole(role);
}

main().catch(exitOnStartError);
