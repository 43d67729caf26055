// The rows of the worker's two access lists, as the web app and the phone app show them: the device keys that
// can approve withdrawals (this browser's or phone's own marked) and the places signed in (this one marked).
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Device, Session } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { readableAgent, type AgentWords } from "./user-agent";

/** One thing the worker may take away: what it is, when, whether it is this device's own, and the question asked before. */
export interface AccessRow {
  id: string;
  name: string;
  when: string[];
  mine: string;
  ask: string;
}

/** A list whose rows go only after a second, explicit yes. */
export interface RemovableProps {
  id: string;
  title: string;
  intro?: string;
  empty: string;
  /** Undefined while loading. */
  rows: AccessRow[] | undefined;
  error: unknown;
  action: string;
  yes: string;
  /** The caller's own row has no button. */
  keepMine?: boolean;
  onConfirm(row: AccessRow): Promise<void>;
}

/** The words the rows need; both apps' catalogues have them. */
export type AccessKey =
  | "addedAt" | "usedAt" | "neverUsed" | "removeDeviceAsk" | "removeDeviceOwnAsk"
  | "signedInAt" | "thisSession" | "signOutAsk" | "browserOn" | "appOn" | "unknownDevice";
export type AccessT = (key: AccessKey, vars?: Record<string, string>) => string;
/** A time as the screen shows it. */
export type ShownTime = (ts: Timestamp | undefined) => string;

function agentWords(t: AccessT): AgentWords {
  return { browserOn: (browser, os) => t("browserOn", { browser, os }), appOn: (os) => t("appOn", { os }), unknown: t("unknownDevice") };
}

/** `own`: this device's key id, if it holds one; `ownLabel`: how it is marked ("this browser", "this phone"). */
export function deviceRows(devices: readonly Device[], own: string | undefined, ownLabel: string, t: AccessT, shown: ShownTime): AccessRow[] {
  const words = agentWords(t);
  return devices.map((d) => {
    const name = readableAgent(d.name, words);
    const mine = d.deviceId === own;
    return {
      id: d.deviceId,
      name,
      when: [t("addedAt", { when: shown(d.registeredAt) }), d.lastVerifiedAt ? t("usedAt", { when: shown(d.lastVerifiedAt) }) : t("neverUsed")],
      mine: mine ? ownLabel : "",
      ask: mine ? t("removeDeviceOwnAsk") : t("removeDeviceAsk", { name }),
    };
  });
}

export function sessionRows(sessions: readonly Session[], t: AccessT, shown: ShownTime): AccessRow[] {
  const words = agentWords(t);
  return sessions.map((s) => {
    const name = readableAgent(s.userAgent, words);
    return {
      id: s.sessionId,
      name,
      when: [t("signedInAt", { when: shown(s.createdAt) }), t("usedAt", { when: shown(s.lastUsedAt) })],
      mine: s.current ? t("thisSession") : "",
      ask: t("signOutAsk", { name }),
    };
  });
}
