// Monthly statements: opening and closing balance and every posting between, a
// month at a time (the wallet's rows); each month seen is kept for offline use.
import { StatementFormat, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { plainError } from "../lib/errors";
import { formatAmount, WALLET_CURRENCY } from "@ttip/web-lib/money";
import { nairobiMonthOf } from "@ttip/web-lib/nairobi-time";
import { useState } from "react";
import { Text, View } from "react-native";
import { when } from "../lib/format";
import { useI18n } from "../lib/i18n";
import { useOfflineQuery } from "../lib/offline";
import { Button, ErrorText, Notice, Screen, Title, styles } from "../ui";
import { OfflineNotice } from "./OfflineNotice";

/** The statement's months: from the platform's first year to this month. */
const FIRST_YEAR = 2024;

export function Statements({ onClose, now = new Date() }: { onClose(): void; now?: Date }) {
  const { t, locale } = useI18n();
  const current = nairobiMonthOf(now); // statements are Nairobi months, whatever zone the phone is set to
  const [ym, setYm] = useState(current);
  const statement = useOfflineQuery(
    WalletService.method.getStatement,
    { year: ym.year, month: ym.month, currency: "KES", format: StatementFormat.ROWS },
    `statement:${ym.year}-${ym.month}`,
  );
  const step = (by: number) => {
    const i = ym.year * 12 + (ym.month - 1) + by;
    setYm({ year: Math.floor(i / 12), month: (i % 12) + 1 });
  };
  const isCurrent = ym.year === current.year && ym.month === current.month;
  const isFirst = ym.year === FIRST_YEAR && ym.month === 1;
  const label = new Date(ym.year, ym.month - 1, 1).toLocaleDateString(locale === "sw" ? "sw-KE" : "en-KE", { month: "long", year: "numeric" });
  const s = statement.data;
  return (
    <Screen testID="statements">
      <Title>{t("statementsTitle")}</Title>
      <Button kind="secondary" testID="statements-close" title={t("back")} onPress={onClose} />
      <View style={{ flexDirection: "row", gap: 8, alignItems: "center", justifyContent: "space-between" }}>
        <Button kind="secondary" testID="month-previous" title="‹" label={t("previousMonth")} disabled={isFirst} onPress={() => step(-1)} />
        <Text testID="statement-month" style={styles.text}>{label}</Text>
        <Button kind="secondary" testID="month-next" title="›" label={t("nextMonth")} disabled={isCurrent} onPress={() => step(1)} />
      </View>
      {statement.offline ? <OfflineNotice savedAt={statement.savedAt} hasData={s !== undefined} /> : null}
      <ErrorText>{statement.error ? plainError(statement.error, locale) : ""}</ErrorText>
      {s ? (
        <>
          <Notice>
            <Text testID="opening" style={styles.text}>{t("opening")}: {formatAmount(s.openingBalance, WALLET_CURRENCY)}</Text>
            <Text testID="closing" style={styles.text}>{t("closing")}: {formatAmount(s.closingBalance, WALLET_CURRENCY)}</Text>
          </Notice>
          <View testID="statement-rows">
            {s.rows.map((r) => (
              <View key={r.entryId} style={styles.row}>
                <View style={{ flex: 1 }}>
                  <Text style={styles.text}>{r.description}</Text>
                  <Text style={styles.muted}>{when(r.postedAt, locale)}</Text>
                </View>
                <View style={{ alignItems: "flex-end" }}>
                  <Text style={styles.text}>{formatAmount(r.amount, WALLET_CURRENCY)}</Text>
                  <Text style={styles.muted}>{formatAmount(r.balanceAfter, WALLET_CURRENCY)}</Text>
                </View>
              </View>
            ))}
            {s.rows.length === 0 ? <Text style={styles.muted}>{t("statementEmpty")}</Text> : null}
          </View>
        </>
      ) : null}
    </Screen>
  );
}
