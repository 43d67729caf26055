// "Devices that can approve withdrawals": auth's device keys, this phone's marked. One the worker does not
// know (a lost phone) goes after a second, explicit yes; removing this phone's own key also forgets it here,
// and the next withdrawal makes a new one.
import { useMutation, useQuery } from "@connectrpc/connect-query";
import type { Device } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { readableAgent } from "@ttip/web-lib/user-agent";
import { useEffect, useState } from "react";
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
  const remove = useMutation(AuthService.method.removeDevice);
  const userId = sessions.get()?.userId ?? "";
  const [own, setOwn] = useState<string>();
  const [asking, setAsking] = useState<string>();
  const [error, setError] = useState("");
  useEffect(() => {
    let alive = true;
    void keyring().then((keys) => keys.deviceId(userId)).then((id) => alive && setOwn(id), () => undefined);
    return () => void (alive = false);
  }, [keyring, userId]);
  const words = { browserOn: (browser: string, os: string) => t("browserOn", { browser, os }), unknown: t("unknownDevice") };

  const confirm = async (device: Device) => {
    setError("");
    try {
      await remove.mutateAsync({ deviceId: device.deviceId });
      if (device.deviceId === own) {
        await (await keyring()).forget(userId);
        setOwn(undefined);
      }
      setAsking(undefined);
      await list.refetch();
    } catch (err) {
      setError(plainError(err, locale));
    }
  };

  const devices = list.data?.devices ?? [];
  return (
    <View testID="devices" style={{ gap: 4 }}>
      <Text role="heading" style={styles.text}>{t("devices")}</Text>
      <Text style={styles.muted}>{t("devicesIntro")}</Text>
      {list.error ? <ErrorText>{plainError(list.error, locale)}</ErrorText> : null}
      {list.data && devices.length === 0 ? <Text style={styles.muted}>{t("noDevices")}</Text> : null}
      {devices.map((d) => {
        const name = readableAgent(d.name, words);
        const mine = d.deviceId === own;
        const ask = mine ? t("removeDeviceOwnAsk") : t("removeDeviceAsk", { name });
        return (
          <Notice key={d.deviceId} testID="device-row">
            <Text style={[styles.text, { fontWeight: "700" }]}>{name}{mine ? <Text style={styles.muted}> ({t("thisPhone")})</Text> : null}</Text>
            <Text style={styles.muted}>{t("addedAt", { when: when(d.registeredAt, locale) })}</Text>
            <Text style={styles.muted}>{d.lastVerifiedAt ? t("usedAt", { when: when(d.lastVerifiedAt, locale) }) : t("neverUsed")}</Text>
            {asking === d.deviceId ? (
              <View testID="device-remove-ask" role="group" aria-label={ask} style={{ gap: 4 }}>
                <Text style={styles.text}>{ask}</Text>
                <Button testID="device-remove-yes" title={t("removeDeviceYes")} disabled={remove.isPending} onPress={() => void confirm(d)} />
                <Button kind="secondary" title={t("keepIt")} disabled={remove.isPending} onPress={() => setAsking(undefined)} />
              </View>
            ) : (
              <Button kind="secondary" testID="device-remove" title={t("removeDevice")} label={`${t("removeDevice")}: ${name}${mine ? ` (${t("thisPhone")})` : ""}`}
                onPress={() => (setError(""), setAsking(d.deviceId))} />
            )}
          </Notice>
        );
      })}
      <ErrorText>{error}</ErrorText>
    </View>
  );
}
