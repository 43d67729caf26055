// The browser test files that share one platform, page server and chromium (harness.ts' stage): the
// test runner runs them in one process through this file, one after another in this order, instead
// of each starting its own. The runner reads these imports (test-lanes.ts' togetherFiles): a file
// added here runs here in a full run, not also alone. Each file still runs alone when named alone.
// The mobile app's gateway file opens no page: it shares the stage's platform (not starting its own).
import "./tip-page.test.js";
import "./card-tip.test.js";
import "./venue-tip.test.js";
import "./venue-manager.test.js";
import "./venue-invite-role.test.js";
import "./venue-managers.test.js";
import "./worker-app.test.js";
import "./worker-double-submit.test.js";
import "./worker-settings.test.js";
import "./live-currencies.test.js";
import "./form-errors.test.js";
import "./keyboard.test.js";
import "../../mobile/test/gateway.test.js";
