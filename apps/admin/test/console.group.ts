// The admin console's browser files in one process: the test runner runs them through this file, one
// after another in this order, instead of each loading the services' code and launching chromium
// (harness.ts shares chromium; each file still starts its own platform on a new database). The runner
// reads these imports (test-lanes.ts' togetherFiles): a file added here runs here in a full run, not
// also alone. Each file still runs alone when named alone.
import "./console.test.js";
import "./console-states.test.js";
import "./phone.test.js";
import "./held-payout.test.js";
import "./payout-requery.test.js";
import "./give-back.test.js";
