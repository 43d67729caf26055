// Serves the admin console's static build at /admin (the gateway's one port in
// make run and in a cluster). Every /admin path that is not an asset gets the
// app's page, which routes in the browser.
import type http from "node:http";
import { ADMIN_DIST } from "./build.js";
import { createAdminHandler as createHandler } from "./handler.js";

export { ensureAdminBuild, adminBuildIsCurrent, ADMIN_DIST } from "./build.js";
export { ADMIN_PATH, isAdminPath } from "./handler.js";

/** A request handler for /admin and below, reading the build from `dist` (this package's by default). */
export function createAdminHandler(dist = ADMIN_DIST): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return createHandler(dist);
}
