import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { GetStatementResponse } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { formatAmount, WALLET_CURRENCY } from "./money";
import { nairobiWallTime } from "./nairobi-time";
import { makePdf, type PdfLine } from "./pdf";
import type { WorkerT } from "./worker-i18n";

/** The statement (a Nairobi month) as a printable PDF, its rows' times on Nairobi's clock: the wallet's own rows, laid out here (no font is fetched: Helvetica is built into PDF). */
export function statementPdf(s: GetStatementResponse, month: string, t: WorkerT): Uint8Array {
  const lines: PdfLine[] = [
    { cells: [t("stmtTitle", { month })], bold: true, size: 16 },
    { cells: [`${t("stmtOpening")}: ${formatAmount(s.openingBalance, WALLET_CURRENCY)}`], size: 10 },
    { cells: [""] },
    { cells: [t("stmtDate"), t("stmtDescription"), t("stmtAmount"), t("stmtBalance")], bold: true },
  ];
  for (const r of s.rows) {
    lines.push({
      cells: [r.postedAt ? nairobiWallTime(timestampDate(r.postedAt)).replace("T", " ") : "", r.description.slice(0, 48), formatAmount(r.amount, WALLET_CURRENCY), formatAmount(r.balanceAfter, WALLET_CURRENCY)],
    });
  }
  if (s.rows.length === 0) lines.push({ cells: ["", t("stmtEmpty")] });
  lines.push({ cells: [""] }, { cells: [`${t("stmtClosing")}: ${formatAmount(s.closingBalance, WALLET_CURRENCY)}`], bold: true, size: 10 });
  return makePdf(lines, [0, 90, 330, 415], [false, false, true, true]);
}

