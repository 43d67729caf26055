// The production image's entry (bundled to compiled JavaScript by platform/build.ts):
//   ttip.mjs <auth|payment|qr|wallet|notification|analytics|venue>  one service
//   ttip.mjs gateway                                               the public gateway
//   ttip.mjs migrate                                               every schema's migrations, then exit
//   ttip.mjs setup-token                                           a one-time token for the first admin, then exit
// The embedded mode and the simulators are not in this build; `npm start` runs them from source.
import { CLUSTER_ROLES, exitOnStartError, runClusterRole } from "./cluster.js";

const role = process.argv[2] ?? "";
if (!CLUSTER_ROLES.includes(role)) {
  console.error(`usage: ttip <${CLUSTER_ROLES.join("|")}> (embedded and simulators run from source: npm start)`);
  process.exit(2);
}
runClusterRole(role).catch(exitOnStartError);
