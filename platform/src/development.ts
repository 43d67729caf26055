// The development image's entry (values-dev.yaml): every cluster role, which may
// use the in-process simulators when configured for them, plus the Daraja simulator
// and the single-host replicas (main.ts replicas, compiled):
//   ttip.mjs <auth|payment|qr|wallet|notification|analytics|venue|gateway|migrate|simulators|replicas>
// The embedded mode (PGlite) is in neither image: `npm start` runs it from source.
import { CLUSTER_ROLES, exitOnStartError, runClusterRole } from "./cluster.js";
import { runSimulators } from "./simulators.js";

const role = process.argv[2] ?? "";
if (role === "simulators") runSimulators().catch(exitOnStartError);
// Loaded only for its role, as main.ts does: a cluster role's process never evaluates it.
else if (role === "replicas") import("./replicas.js").then((r) => r.runReplicas()).catch(exitOnStartError);
else if (CLUSTER_ROLES.includes(role)) runClusterRole(role).catch(exitOnStartError);
else {
  console.error(`usage: ttip <${[...CLUSTER_ROLES, "simulators", "replicas"].join("|")}>`);
  process.exit(2);
}
