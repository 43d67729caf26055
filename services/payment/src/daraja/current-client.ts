import type { Clock } from "@ttip/runtime";
import { DarajaClient, type DarajaConfig } from "./client.js";

/**
 * Every field of two Daraja configurations equal (strings, numbers, the request function by identity).
 * The whole configuration, not a few fields: a client built from an older one would keep its timeout,
 * secret, passkey, initiator or certificate after a change of it alone.
 */
export function sameDarajaConfig(a: DarajaConfig, b: DarajaConfig): boolean {
  if (a === b) return true;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as (keyof DarajaConfig)[]);
  for (const k of keys) if (a[k] !== b[k]) return false;
  return true;
}

/**
 * The Daraja client for the configuration read at each call: one client, and so one cached OAuth token
 * (an extra round trip to Safaricom saved on every push and payout), for as long as the configuration is
 * unchanged; a new one as soon as any field of it changes.
 */
export function currentDarajaClient(config: () => DarajaConfig | undefined, clock: () => Clock): () => DarajaClient {
  let current: { config: DarajaConfig; client: DarajaClient } | undefined;
  return () => {
    const c = config();
    if (!c) throw new Error("Daraja is not configured");
    if (!current || !sameDarajaConfig(current.config, c)) current = { config: c, client: new DarajaClient(c, clock()) };
    return current.client;
  };
}
