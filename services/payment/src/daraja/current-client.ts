import type { Clock } from "@ttip/runtime";
import { perConfiguration } from "../per-configuration.js";
import { DarajaClient, type DarajaConfig } from "./client.js";

/**
 * The Daraja client for the configuration read at each call: one client, and so one cached OAuth token
 * (an extra round trip to Safaricom saved on every push and payout), for as long as the configuration is
 * unchanged; a new one as soon as any field of it changes (its timeout alone included).
 */
export function currentDarajaClient(config: () => DarajaConfig | undefined, clock: () => Clock): () => DarajaClient {
  const client = perConfiguration(config, (c) => new DarajaClient(c, clock()));
  return () => {
    const c = client();
    if (!c) throw new Error("Daraja is not configured");
    return c;
  };
}
