// Who can act for the worker: the devices that can approve withdrawals (auth's device keys, this phone's
// marked) and where the worker is signed in (auth's sessions, this one marked). A row goes only after a
// second, explicit yes; a refusal is said in words and the row stays. Removing this phone's own key also
// forgets it here, so the next withdrawal makes a new one; this session is ended by "Sign out" instead.
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { deviceRows, sessionRows, type AccessRow, type RemovableProps } from "@ttip/web-lib/access-rows";
import { useEffect, useRef, useState } from "react";
import { Text, View } from "react-native";
import { useApp } from "../app-context";
import { plainError } from "../lib/errors";
import { when } from "../lib/format";
import { useI18n } from "../lib/i18n";
import { Button, ErrorText, Notice, styles } from "../ui";

export function DeviceKeys() {
  const { sessions, keyring } = useApp();
  const { t, locale } = useI18n();
  const list = useQuery(AuthService.method.listDevices, {});
  // Removing another phone signs it out: the places signed in (SignedIn's query, shared) are read again.
  const signedIn = useQuery(AuthService.method.listSessions, {});
  const remove = useMutation(AuthService.method.removeDevice);
  const userId = sessions.get()?.userId ?? "";
  const [own, setOwn] = useState<string>();
  useEffect(() => {
    let alive = true;
    void keyring().then((keys) => keys.deviceId(userId)).then((id) => alive && setOwn(id), () => undefined);
    return () => void (alive = false);
  }, [keyring, userId]);
  const rows = list.data && deviceRows(list.data.devices, own, t("thisPhone"), t, (ts) => when(ts, locale));
  return (
    <Removable
      id="device" title={t("devices")} intro={t("devicesIntro")} empty={t("noDevices")} rows={rows} error={list.error}
      action={t("removeDevice")} yes={t("removeDeviceYes")}
      onConfirm={async (row) => {
        await remove.mutateAsync({ deviceId: row.id });
        if (row.mine) {
          await (await keyring()).forget(userId);
          setOwn(undefined);
        }
        await Promise.all([list.refetch(), signedIn.refetch()]);
      }}
    />
  );
}

export function SignedIn() {
  const { t, locale } = useI18n();
  const list = useQuery(AuthService.method.listSessions, {});
  const revoke = useMutation(AuthService.method.revokeSession);
  const rows = list.data && sessionRows(list.data.sessions, t, (ts) => when(ts, locale));
  return (
    <Removable
      id="session" title={t("sessions")} empty="" rows={rows} error={list.error} action={t("signOutOne")} yes={t("signOutYes")} keepMine
      onConfirm={async (row) => {
        await revoke.mutateAsync({ sessionId: row.id });
        await list.refetch();
      }}
    />
  );
}

function Removable({ id, title, intro, empty, rows, error, action, yes, keepMine, onConfirm }: RemovableProps) {
  const { t, locale } = useI18n();
  const [asking, setAsking] = useState<string>();
  const [busy, setBusy] = useState(false);
  // Taken before any await: `busy` comes a render too late for a double tap, whose second call was refused (the
  // device or session gone already) and showed an error after a removal that worked.
  const running = useRef(false);
  const [problem, setProblem] = useState("");
  const confirm = async (row: AccessRow) => {
    if (running.current) return;
    running.current = true;
    setProblem("");
    setBusy(true);
    try {
      await onConfirm(row);
      setAsking(undefined);
    } catch (err) {
      setProblem(plainError(err, locale));
    } finally {
      running.current = false;
      setBusy(false);
    }
  };
  return (
    <View testID={`${id}s`} style={{ gap: 4 }}>
      <Text role="heading" style={styles.text}>{title}</Text>
      {intro ? <Text style={styles.muted}>{intro}</Text> : null}
      {error ? <ErrorText>{plainError(error, locale)}</ErrorText> : null}
      {rows?.length === 0 && empty ? <Text style={styles.muted}>{empty}</Text> : null}
      {rows?.map((row) => (
        <Notice key={row.id} testID={`${id}-row`}>
          <Text style={[styles.text, { fontWeight: "700" }]}>{row.name}{row.mine ? <Text style={styles.muted}> ({row.mine})</Text> : null}</Text>
          {row.when.map((w) => <Text key={w} style={styles.muted}>{w}</Text>)}
          {keepMine && row.mine ? null : asking === row.id ? (
            <View testID={`${id}-ask`} role="group" aria-label={row.ask} style={{ gap: 4 }}>
              <Text style={styles.text}>{row.ask}</Text>
              <Button testID={`${id}-yes`} title={yes} disabled={busy} onPress={() => void confirm(row)} />
              <Button kind="secondary" title={t("keepIt")} disabled={busy} onPress={() => setAsking(undefined)} />
            </View>
          ) : (
            <Button kind="secondary" title={action} label={`${action}: ${row.name}${row.mine ? ` (${row.mine})` : ""}`} onPress={() => (setProblem(""), setAsking(row.id))} />
          )}
        </Notice>
      ))}
      <ErrorText>{problem}</ErrorText>
    </View>
  );
}
