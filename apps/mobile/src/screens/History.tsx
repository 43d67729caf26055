// Every tip, newest first, by status, a page at a time; the first page of all tips
// is kept for offline use.
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { plainError } from "../lib/errors";
import { formatAmount, WALLET_CURRENCY } from "@ttip/web-lib/money";
import { useState } from "react";
import { Text, View } from "react-native";
import { tipState, when } from "../lib/format";
import { useI18n, type MessageKey } from "../lib/i18n";
import { useOfflineQuery } from "../lib/offline";
import { Button, ErrorText, Screen, Title, styles } from "../ui";
import { OfflineNotice } from "./OfflineNotice";

const FILTERS: [TipStatus, MessageKey][] = [
  [TipStatus.UNSPECIFIED, "filterAll"],
  [TipStatus.SUCCEEDED, "filterReceived"],
  [TipStatus.FAILED, "filterFailed"],
  [TipStatus.PENDING, "filterWaiting"],
];
export const HISTORY_PAGE = 20;

export function History({ onOpenStatements }: { onOpenStatements(): void }) {
  const { t, locale } = useI18n();
  const [status, setStatus] = useState(TipStatus.UNSPECIFIED);
  const [tokens, setTokens] = useState<string[]>([""]);
  const page = useOfflineQuery(
    PaymentService.method.listTips,
    { status, page: { pageSize: HISTORY_PAGE, pageToken: tokens.at(-1) } },
    // By the page's place, not its token: tokens change as tips arrive, and a copy kept per token was a new one at
    // each visit, never deleted (the cache filled, and the withdrawal keys kept beside them could no longer be saved).
    `history:${status}:${tokens.length}`,
  );
  const tips = page.data?.tips ?? [];
  return (
    <Screen testID="history">
      <Title>{t("historyTitle")}</Title>
      <Button kind="secondary" testID="open-statements" title={t("statementsTitle")} onPress={onOpenStatements} />
      <View style={{ flexDirection: "row", gap: 8, flexWrap: "wrap" }}>
        {FILTERS.map(([s, label]) => (
          <Button key={s} testID={`filter-${s}`} kind={s === status ? "primary" : "secondary"} title={t(label)} onPress={() => (setStatus(s), setTokens([""]))} />
        ))}
      </View>
      {page.offline ? <OfflineNotice savedAt={page.savedAt} hasData={page.data !== undefined} /> : null}
      <ErrorText>{page.error ? plainError(page.error, locale) : ""}</ErrorText>
      <View testID="history-list">
        {tips.map((tip) => (
          <View key={tip.tipId} style={styles.row}>
            <Text style={styles.text}>{formatAmount(tip.amount, WALLET_CURRENCY)}</Text>
            <Text style={styles.muted}>{tipState(tip, locale, t)} · {when(tip.createdAt, locale)}</Text>
          </View>
        ))}
      </View>
      {tokens.length > 1 ? <Button kind="secondary" title={t("newer")} onPress={() => setTokens(tokens.slice(0, -1))} /> : null}
      {page.data?.page?.nextPageToken ? <Button kind="secondary" testID="older" title={t("older")} onPress={() => setTokens([...tokens, page.data!.page!.nextPageToken])} /> : null}
    </Screen>
  );
}
