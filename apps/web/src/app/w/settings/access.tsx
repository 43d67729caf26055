"use client";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useEffect, useState } from "react";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { forgetDeviceKey, loadDeviceKey } from "../../../lib/device-key";
import { loadSession } from "../../../lib/session";
import { useWrite } from "../../../lib/use-write";
import { deviceRows, sessionRows, type AccessRow, type RemovableProps } from "../../../lib/access-rows";
import { shown } from "../../v/util";
import { useT } from "../use-t";

type Devices = ReturnType<typeof useDevices>;
type Sessions = ReturnType<typeof useSessions>;

/** The two lists; the settings screen waits for them as for its other sections. */
export function useAccessLists(): { devices: Devices; sessions: Sessions; loaded: boolean } {
  const devices = useDevices();
  const sessions = useSessions();
  return { devices, sessions, loaded: devices.list.isFetched && devices.ownChecked && sessions.isFetched };
}

function useDevices() {
  const list = useQuery(AuthService.method.listDevices, {});
  const [own, setOwn] = useState<string>();
  const [ownChecked, setOwnChecked] = useState(false);
  useEffect(() => {
    const session = loadSession();
    // No IndexedDB (a private window, say): this browser holds no key, nothing to mark.
    void (session ? loadDeviceKey(session.userId) : Promise.resolve(undefined))
      .then((k) => setOwn(k?.deviceId), () => setOwn(undefined))
      .finally(() => setOwnChecked(true));
  }, []);
  return { list, own, setOwn, ownChecked };
}

function useSessions() {
  return useQuery(AuthService.method.listSessions, {});
}

/**
 * "Devices that can approve withdrawals": auth's device keys, this browser's marked; removing its own also forgets it
 * here. Removing another signs that phone out, so the places signed in are read again.
 */
export function DeviceKeys({ devices, sessions }: { devices: Devices; sessions: Sessions }) {
  const { t, locale } = useT();
  const remove = useMutation(AuthService.method.removeDevice);
  const rows = deviceRows(devices.list.data?.devices ?? [], devices.own, t("thisBrowser"), t, (ts) => shown(ts, locale));
  return (
    <Removable
      id="devices" title={t("devices")} intro={t("devicesIntro")} empty={t("noDevices")} rows={rows} error={devices.list.error}
      action={t("removeDevice")} yes={t("removeDeviceYes")}
      onConfirm={async (row) => {
        await remove.mutateAsync({ deviceId: row.id });
        // Its key is useless now: the next withdrawal here registers a new one.
        const session = loadSession();
        if (row.mine && session) {
          await forgetDeviceKey(session.userId);
          devices.setOwn(undefined);
        }
        await Promise.all([devices.list.refetch(), sessions.refetch()]);
      }}
    />
  );
}

/** "Where you are signed in": auth's sessions, this one marked; any other can be signed out (this one signs out from the home). */
export function SignedIn({ sessions }: { sessions: Sessions }) {
  const { t, locale } = useT();
  const revoke = useMutation(AuthService.method.revokeSession);
  const rows = sessionRows(sessions.data?.sessions ?? [], t, (ts) => shown(ts, locale));
  return (
    <Removable
      id="sessions" title={t("sessions")} empty={t("none")} rows={rows} error={sessions.error}
      action={t("signOutOne")} yes={t("signOutYes")} keepMine
      onConfirm={async (row) => {
        await revoke.mutateAsync({ sessionId: row.id });
        await sessions.refetch();
      }}
    />
  );
}

/** A list whose rows go only after a second, explicit yes; a refusal is said in words and the row stays. */
function Removable({ id, title, intro, empty, rows, error, action, yes, keepMine, onConfirm }: RemovableProps) {
  const { t, err } = useT();
  const [asking, setAsking] = useState<string>();
  const [problem, setProblem] = useState("");
  const write = useWrite();
  const confirm = (row: AccessRow) => write.run(async () => {
    setProblem("");
    await onConfirm(row);
    setAsking(undefined);
  }, (x) => setProblem(err(x)));
  return (
    <section aria-labelledby={id} data-testid={`list-${id}`}>
      <h2 id={id}>{title}</h2>
      {intro ? <p className="muted">{intro}</p> : null}
      {error ? <p className="error" role="alert">{err(error)}</p> : null}
      {!error && rows?.length === 0 ? <p className="muted">{empty}</p> : null}
      <ul className="plain">
        {rows?.map((row) => (
          <li key={row.id} className="notice" data-testid={`${id}-row`}>
            <strong>{row.name}</strong>{row.mine ? <span className="muted"> ({row.mine})</span> : null}
            {row.when.map((w) => <div key={w} className="muted">{w}</div>)}
            {keepMine && row.mine ? null : asking === row.id ? (
              <div role="group" aria-label={row.ask}>
                <p>{row.ask}</p>
                <button type="button" disabled={write.busy} onClick={() => confirm(row)}>{yes}</button>
                <button type="button" className="secondary" disabled={write.busy} onClick={() => setAsking(undefined)}>{t("keepIt")}</button>
              </div>
            ) : (
              <button type="button" className="secondary" aria-label={`${action}: ${row.name}${row.mine ? ` (${row.mine})` : ""}`} onClick={() => { setProblem(""); setAsking(row.id); }}>{action}</button>
            )}
          </li>
        ))}
      </ul>
      {problem ? <p className="error" role="alert">{problem}</p> : null}
    </section>
  );
}
