// The development image's entry (values-dev.yaml): every cluster role, which may
// use the in-process simulators when configured for them, plus the Daraja simulator:
//   ttip.mjs <auth|payment|qr|wallet|notification|analytics|venue|gateway|migrate|simulators>
// The embedded mode (PGlite) is in neither image: `npm start` runs it from source.
import { CLUSTER_ROLES, exitOnStartError, runClusterRole } from "./cluster.js";
import { runSimulators } from "./simulators.js";

const role = process.argv[2] ?? "";
if (role === "simulators") runSimulators().catch(exitOnStartError);
else if (CLUSTER_ROLES.includes(role)) runClusterRole(role).catch(exitOnStartError);
else {
  console.error(`usage: ttip <${[...CLUSTER_ROLES, "simulators"].join("|")}>`);
  process.exit(2);
}
