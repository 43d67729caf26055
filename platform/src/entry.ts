import { fileURLToPath } from "node:url";

/** The file a cluster runs with a role as its argument, for harnesses that start real processes. */
export const PLATFORM_MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));
