// What the screens need from the outside world, behind interfaces so the tests
// give in-memory stores, a real software key and a fake gateway (a router transport).
import { createContext, useContext } from "react";
import type { Biometric } from "./lib/biometric";
import type { DeviceKeyring } from "./lib/device-key";
import type { KeyValue } from "./lib/key-value";
import type { PushRegistrar } from "./lib/push";
import type { SessionStore } from "./lib/session";

export interface AppServices {
  sessions: SessionStore;
  /** Offline copies and small settings (the chosen language). */
  cache: KeyValue;
  /**
   * The keys of withdrawals sent and not answered yet: a few small values, kept in the secure store (they name the
   * M-Pesa number), apart from the offline copies, whose storage filled and then refused every withdrawal's key.
   */
  writeKeys: KeyValue;
  keyring: () => Promise<DeviceKeyring>;
  biometric: Biometric;
  push: PushRegistrar;
  /** Opens the share sheet; on the web build, copies or uses navigator.share. */
  share(message: string, url: string): Promise<void>;
  /** A new idempotency key for one payout attempt. */
  newKey(): string;
}

export const AppContext = createContext<AppServices | undefined>(undefined);

export function useApp(): AppServices {
  const s = useContext(AppContext);
  if (!s) throw new Error("useApp outside <App>");
  return s;
}
