// Home: the balance (available and held), today and this week (Nairobi's day and
// Monday-to-Sunday week, whatever the phone's zone), the latest tips.
// New tips appear without a reload (polled every 3 s; a push also refreshes) and the
// newest one is announced; offline, the saved copies are shown with their time.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { TipStatus, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { plainError } from "../lib/errors";
import { type Amount, formatAmount, WALLET_CURRENCY } from "@ttip/web-lib/money";
import { nairobiMonthStart } from "@ttip/web-lib/nairobi-time";
import { useEffect, useRef, useState } from "react";
import { Text, View } from "react-native";
import { tipState, when } from "../lib/format";
import { useI18n } from "../lib/i18n";
import { useOfflineQuery } from "../lib/offline";
import { Button, ErrorText, Notice, Screen, Title, styles } from "../ui";
import { useUnreadCount } from "./Inbox";
import { OfflineNotice } from "./OfflineNotice";

export const POLL_MS = 3000;

export function Home({ onOpenInbox }: { onOpenInbox(): void }) {
  const { t, locale } = useI18n();
  const balance = useOfflineQuery(WalletService.method.getBalance, { currency: "KES" }, "balance", { refetchInterval: POLL_MS });
  const tips = useOfflineQuery(PaymentService.method.listTips, { page: { pageSize: 50 } }, "tips", { refetchInterval: POLL_MS });
  // Today and this week as the web app shows them: analytics' net (what reached the worker, in KES, by Nairobi's day
  // and week), over every tip, not the latest page's amounts summed here.
  const [range] = useState(() => ({ from: timestampFromDate(nairobiMonthStart(new Date())), to: timestampFromDate(new Date(Date.now() + 86_400_000)) }));
  const earnings = useOfflineQuery(AnalyticsService.method.getWorkerEarnings, { range, currency: "KES" }, "earnings", { refetchInterval: POLL_MS });
  const e = earnings.data?.earnings;
  const list = tips.data?.tips ?? [];
  const b = balance.data?.balances[0];
  const arrived = useArrivals(list, tips.data !== undefined);
  const offline = balance.offline || tips.offline || earnings.offline;
  const unread = useUnreadCount(POLL_MS);
  // No wallet yet is KES 0: the balance was read, and it has none.
  const balanceText = (amount: Amount | undefined) => (balance.data ? formatAmount(amount, WALLET_CURRENCY) : balance.error || balance.offline ? "—" : "…");
  return (
    <Screen testID="home">
      <Title>{t("homeTitle")}</Title>
      {offline ? <OfflineNotice savedAt={balance.savedAt ?? tips.savedAt} hasData={!!b || list.length > 0} /> : null}
      <ErrorText>{[balance.error, tips.error, earnings.error].filter(Boolean).map((err) => plainError(err, locale))[0] ?? ""}</ErrorText>
      {arrived ? (
        <Notice testID="new-tip">
          <Text role="status" aria-live="polite" style={styles.text}>{t("newTip", { amount: formatAmount(arrived.amount, WALLET_CURRENCY) })}</Text>
        </Notice>
      ) : null}
      <Notice>
        <Text style={styles.muted}>{t("available")}</Text>
        {/* Not known is not KES 0 (read as money gone): "…" while loading, "—" when it failed or no copy was saved. */}
        <Text testID="available" style={styles.big}>{balanceText(b?.available)}</Text>
        <Text testID="held" style={styles.muted}>{t("held")}: {balanceText(b?.held)}</Text>
        <Text style={styles.text}>
          {/* Not known is not "…" forever: "—" when the call failed (the reason is above). */}
          {t("today")}: {e ? formatAmount(e.today?.net, WALLET_CURRENCY) : earnings.error ? "—" : "…"} · {t("thisWeek")}: {e ? formatAmount(e.thisWeek?.net, WALLET_CURRENCY) : earnings.error ? "—" : "…"}
        </Text>
      </Notice>
      <Button kind="secondary" testID="open-inbox" title={unread > 0 ? t("inboxButtonUnread", { count: String(unread) }) : t("inboxButton")} onPress={onOpenInbox} />
      <Text role="heading" style={styles.text}>{t("latestTips")}</Text>
      <View testID="latest-tips">
        {list.slice(0, 10).map((tip) => (
          <View key={tip.tipId} style={styles.row} testID={`tip-${tip.tipId}`}>
            <Text style={styles.text}>{formatAmount(tip.amount, WALLET_CURRENCY)}{tip.rating ? ` · ${tip.rating}★` : ""}</Text>
            <Text style={styles.muted}>{tipState(tip, locale, t)} · {when(tip.createdAt, locale)}</Text>
          </View>
        ))}
        {list.length === 0 && !tips.isLoading && !offline ? <Text style={styles.muted}>{t("noTips")}</Text> : null}
      </View>
    </Screen>
  );
}

/** The newest received tip that was not in the first list this screen saw. */
function useArrivals(list: Tip[], loaded: boolean): Tip | undefined {
  const seen = useRef<Set<string> | undefined>(undefined);
  const [latest, setLatest] = useState<Tip>();
  useEffect(() => {
    if (!loaded) return;
    const received = list.filter((t) => t.status === TipStatus.SUCCEEDED);
    if (!seen.current) {
      seen.current = new Set(received.map((t) => t.tipId));
      return;
    }
    const fresh = received.find((t) => !seen.current!.has(t.tipId));
    for (const t of received) seen.current.add(t.tipId);
    if (fresh) setLatest(fresh);
  }, [list, loaded]);
  return latest;
}
