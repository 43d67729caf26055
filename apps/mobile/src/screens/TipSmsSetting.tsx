// "Also tell me about tips by SMS": the tip-received kind's SMS channel in the
// worker's notification preferences. Offline, the change waits on the phone.
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { useTransport } from "@connectrpc/connect-query";
import { PreferencesSchema, type Preferences } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { plainError } from "../lib/errors";
import { useEffect, useState } from "react";
import { Switch, Text, View } from "react-native";
import { useApp } from "../app-context";
import { useI18n } from "../lib/i18n";
import { isUnreachable } from "../lib/offline";
import { dropPreferences, flushPreferences, pendingPreferences, queuePreferences, smsOn, withTipSms } from "../lib/pending-settings";
import { Button, ErrorText, styles } from "../ui";

export function TipSmsSetting() {
  const { cache, sessions } = useApp();
  const { t, locale } = useI18n();
  const transport = useTransport();
  const userId = sessions.get()?.userId ?? "";
  const [prefs, setPrefs] = useState<Preferences>();
  const [note, setNote] = useState("");
  const [error, setError] = useState("");
  const [notLoaded, setNotLoaded] = useState(false);
  const [loads, setLoads] = useState(0);
  useEffect(() => {
    let alive = true;
    void (async () => {
      // A change still waiting on the phone is what the worker chose last.
      const pending = await pendingPreferences(cache, userId);
      if (pending) return alive && (setPrefs(pending), setNote(t("prefQueued")));
      const res = await createClient(NotificationService, transport).getPreferences({}).catch(() => undefined);
      if (!alive) return;
      // Not loaded, the switch waits: a change sends the whole preferences, and an empty stand-in would clear the
      // quiet hours and other channels the worker set elsewhere.
      setNotLoaded(!res);
      if (res) setPrefs(res.preferences ?? create(PreferencesSchema));
    })();
    return () => void (alive = false);
  }, [cache, userId, transport, t, loads]);

  const change = async (on: boolean) => {
    if (!prefs) return;
    const next = withTipSms(prefs, on);
    setPrefs(next);
    setError("");
    // Through the phone's copy: the latest choice is what any send (this one, or the retry timer's) sends, and an
    // older copy still waiting is replaced, never sent after it.
    await queuePreferences(cache, userId, next);
    try {
      await flushPreferences(cache, userId, createClient(NotificationService, transport), () => sessions.get()?.userId);
      setNote(t("prefSaved"));
    } catch (err) {
      if (isUnreachable(err)) return setNote(t("prefQueued"));
      await dropPreferences(cache, userId, next);
      setPrefs(prefs);
      setError(plainError(err, locale));
    }
  };

  return (
    <View style={{ gap: 4 }}>
      <View style={{ flexDirection: "row", alignItems: "center", justifyContent: "space-between", gap: 8 }}>
        <Text nativeID="tip-sms-label" style={[styles.text, { flex: 1 }]}>{t("tipSms")}</Text>
        <Switch testID="tip-sms" accessibilityLabel={t("tipSms")} disabled={!prefs} value={smsOn(prefs)} onValueChange={(v) => void change(v)} />
      </View>
      {note ? <Text testID="tip-sms-note" role="status" style={styles.muted}>{note}</Text> : null}
      {notLoaded ? (
        <View testID="tip-sms-not-loaded" style={{ gap: 4 }}>
          <Text role="alert" style={styles.muted}>{t("prefNotLoaded")}</Text>
          <Button kind="secondary" title={t("prefLoadAgain")} onPress={() => setLoads((n) => n + 1)} />
        </View>
      ) : null}
      <ErrorText>{error}</ErrorText>
    </View>
  );
}
